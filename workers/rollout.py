"""The rollout actor: loads its policy once, samples K edits per prompt with the `old` adapter, and
scores each group over HTTP while it generates the next one.

Generation runs in a worker thread (torch releases the GIL in its kernels), so the event loop keeps
the reward requests of earlier groups moving; at the end only the last group's rewards are waited
for. A group whose rewards cannot be had is dropped and counted, never scored 0.0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from motionnft.contracts.client import JudgeClient, RetryPolicy, RewardClient
from workers.policies.base import Conditions, Policy, sample_seed
from workers.rewards import GroupRewards, RewardUnavailable, score_group
from workers.tasks import DroppedGroup, EditTask, RolloutBatch, RolloutGroup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutSettings:
    """How to sample and where to get rewards."""

    samples_per_prompt: int = 8
    steps: int = 6
    guidance: float = 2.5
    run_seed: int = 0
    reward_url: str = "http://127.0.0.1:8001"
    judge_url: str = "http://127.0.0.1:8002"
    judge_rubric: str = "edit"
    timeout_s: float = 60.0
    deadline_s: float = 120.0
    max_attempts: int = 3


class Rollout:
    """The actor's logic, usable without Ray (tests, single-process runs)."""

    def __init__(self, policy_factory: Callable[[], Policy], settings: RolloutSettings) -> None:
        torch.set_num_threads(1)  # actors share the machine's cores with each other and the services
        self.policy = policy_factory()
        self.settings = settings
        self.version = 0

    def set_sampling_weights(self, version: int, state: dict[str, torch.Tensor]) -> int:
        """Load the learner's `old` adapter (shared by every actor through one ray.put)."""
        self.policy.load_adapter_state("old", state)
        self.version = version
        return version

    def rollout(self, tasks: list[EditTask], epoch: int, keep_images: bool = False) -> RolloutBatch:
        # A private event loop per call: the actor stays a plain (threaded) Ray actor, which an
        # `async def` method would turn into an asyncio actor whose loop asyncio.run cannot nest in.
        return asyncio.run(_roll_out(self, tasks, epoch, keep_images))

    def generate(self, task: EditTask, seeds: list[int]) -> tuple[Conditions, torch.Tensor, np.ndarray]:
        s = self.settings
        with torch.no_grad():  # not inference_mode: these latents become the learner's training data
            conditions = self.policy.encode_conditions([task.prompt], task.input_image[None])
            latents = self.policy.sample(conditions, seeds, adapter="old", steps=s.steps, guidance=s.guidance)
            images = self.policy.decode(latents)
        return conditions.cpu(), latents.detach().cpu().clone(), images


async def _roll_out(rollout: Rollout, tasks: list[EditTask], epoch: int, keep_images: bool) -> RolloutBatch:
    """Generate group after group in a thread while earlier groups are scored on the event loop."""
    s = rollout.settings
    retry = RetryPolicy(max_attempts=s.max_attempts)
    batch = RolloutBatch()
    started = time.perf_counter()
    async with (
        RewardClient(s.reward_url, timeout_s=s.timeout_s, deadline_s=s.deadline_s, retry=retry) as reward,
        JudgeClient(s.judge_url, timeout_s=s.timeout_s, deadline_s=s.deadline_s, retry=retry) as judge,
    ):
        pending: list[tuple[EditTask, list[int], torch.Tensor, Conditions, np.ndarray, asyncio.Task[GroupRewards]]] = []
        for task in tasks:
            seeds = [sample_seed(s.run_seed, epoch, task.prompt_id, k) for k in range(s.samples_per_prompt)]
            t0 = time.perf_counter()
            conditions, latents, images = await asyncio.to_thread(rollout.generate, task, seeds)
            batch.sample_s += time.perf_counter() - t0
            scoring = asyncio.create_task(
                score_group(
                    reward, judge, group_id=f"e{epoch}-{task.prompt_id}-v{rollout.version}",
                    instruction=task.prompt, source=task.input_image, target=task.target_image,
                    edits=list(images), rubric=s.judge_rubric,
                )
            )  # fmt: skip
            pending.append((task, seeds, latents, conditions, images, scoring))
        waiting = time.perf_counter()
        for task, seeds, latents, conditions, images, scoring in pending:
            try:
                rewards = await scoring
            except RewardUnavailable as exc:
                log.warning("dropping %s: %s", task.prompt_id, exc)
                batch.dropped.append(DroppedGroup(task.prompt_id, exc.reason, exc.request_ids))
                continue
            kept = images if keep_images else None
            batch.groups.append(RolloutGroup(task, seeds, latents, conditions, rewards, rollout.version, kept))
        batch.reward_wait_s = time.perf_counter() - waiting
    batch.total_s = time.perf_counter() - started
    return batch


def rollout_actor_class():
    """`Rollout` as a Ray actor (imported lazily so the library works without Ray)."""
    import ray

    return ray.remote(num_cpus=1)(Rollout)

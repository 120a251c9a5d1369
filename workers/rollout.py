"""The rollout actor: loads its policy once, samples K edits per prompt with the `old` adapter, and
scores each group over HTTP while it generates the next one.

Generation runs in a worker thread (torch releases the GIL in its kernels), so the event loop keeps
the reward requests of earlier groups moving; at the end only the last group's rewards are waited
for. A group whose rewards cannot be had is dropped and counted, never scored 0.0.

What is constant per dataset item is encoded once: a task's conditions (the text encoder's prompt
embeddings, the input image's latents; the encoders are frozen) are kept, as CPU tensors, in a
byte-bounded LRU cache keyed by the task's id, prompt and image content, and reused by every sample
and epoch that meets the task again (as the reward service keeps the target flow), for any family.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from motionnft.caching import LRUCache
from motionnft.contracts.client import JudgeClient, RetryPolicy, RewardClient
from workers.policies.base import SAMPLING, Conditions, Policy, sample_seed
from workers.policies.factory import PolicySpec, build_policy
from workers.rewards import GroupRewards, RewardUnavailable, fetch_group_rewards
from workers.tasks import DroppedGroup, EditTask, RolloutBatch, RolloutGroup

log = logging.getLogger(__name__)

# (prompt id, prompt, digest of the input image): ids alone may repeat across datasets (train, eval).
ConditionKey = tuple[str, str, str]


def condition_key(task: EditTask) -> ConditionKey:
    """What makes a task's conditions the same: its id, its prompt and its input image's content."""
    image = np.ascontiguousarray(task.input_image)
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.dtype}{image.shape}".encode())
    return task.prompt_id, task.prompt, digest.hexdigest()


def condition_bytes(key: ConditionKey, conditions: Conditions) -> int:
    """A cached entry's cost: the tensors a family's conditions hold (plain dataclasses) plus the key."""
    tensors = [value for value in vars(conditions).values() if isinstance(value, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors) + sum(len(part) for part in key) + 256


class RewardEndpoints(BaseModel):
    """Where a rollout actor gets its rewards, and how long it tries (a config section of its own)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reward_url: str = "http://127.0.0.1:8001"
    judge_url: str = "http://127.0.0.1:8002"
    judge_rubric: str = "edit"
    timeout_s: float = Field(default=60.0, gt=0, description="Per request attempt, s.")
    deadline_s: float = Field(default=120.0, gt=0, description="Per request, retries included, s.")
    max_attempts: int = Field(default=3, gt=0)
    # Tokens never sit in a config (configs are logged and checkpointed): the actor reads them from
    # its own environment, which a cluster fills from a Secret.
    reward_token_env: str = Field(default="MOTIONNFT_REWARD_TOKEN", description="Env var with the reward API's token.")
    judge_token_env: str = Field(default="MOTIONNFT_JUDGE_TOKEN", description="Env var with the judge's token.")

    def tokens(self) -> tuple[str | None, str | None]:
        """(reward API token, judge token) from this process's environment; None where unset or empty."""
        return os.environ.get(self.reward_token_env) or None, os.environ.get(self.judge_token_env) or None


class Rollout:
    """The actor's logic, usable without Ray (tests, single-process runs)."""

    def __init__(
        self,
        policy: PolicySpec,
        rewards: RewardEndpoints,
        *,
        size: int,
        samples_per_prompt: int,
        run_seed: int,
        policy_factory: Callable[[], Policy] | None = None,
    ) -> None:
        """The run's own config sections, validated once when the config was loaded; the policy is
        built here from `policy` (or by `policy_factory`, for tests)."""
        torch.set_num_threads(1)  # actors share the machine's cores with each other and the services
        self.policy = policy_factory() if policy_factory else build_policy(policy, size=size)
        self.spec, self.rewards = policy, rewards
        self.samples_per_prompt, self.run_seed = samples_per_prompt, run_seed
        self.version = 0
        self.conditions: LRUCache[ConditionKey, Conditions] = LRUCache(
            int(policy.condition_cache_mb * 2**20), condition_bytes
        )
        self.encode_s = 0.0  # total time spent encoding (cache misses), s

    def set_sampling_weights(self, sampling: tuple[int, dict[str, torch.Tensor]]) -> int:
        """Load (version, weights) as the sampling adapter; on Ray, one object the learner put, passed
        to every actor by reference (it never travels through the driver)."""
        version, state = sampling
        self.policy.load_adapter_state(SAMPLING, state)
        self.version = version
        return version

    def rollout(
        self, tasks: list[EditTask], epoch: int, keep_images: bool = False, samples: int | None = None
    ) -> RolloutBatch:
        """Sample and score `samples` edits per task (default `samples_per_prompt`; evaluation asks for 1)."""
        # A private event loop per call: the actor stays a plain (threaded) Ray actor, which an
        # `async def` method would turn into an asyncio actor whose loop asyncio.run cannot nest in.
        return asyncio.run(_roll_out(self, tasks, epoch, keep_images, samples or self.samples_per_prompt))

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[tuple[RewardClient, JudgeClient]]:
        """The two service clients of one rollout call (tests replace this with fakes)."""
        s = self.rewards
        retry = RetryPolicy(max_attempts=s.max_attempts)
        reward_token, judge_token = s.tokens()
        async with (
            RewardClient(s.reward_url, token=reward_token, timeout_s=s.timeout_s, deadline_s=s.deadline_s,
                         retry=retry) as reward,
            JudgeClient(s.judge_url, token=judge_token, timeout_s=s.timeout_s, deadline_s=s.deadline_s,
                        retry=retry) as judge,
        ):  # fmt: skip
            yield reward, judge

    def encoded(self, task: EditTask) -> Conditions:
        """The task's conditions (CPU, B = 1): encoded the first time, from the cache after that."""
        key = condition_key(task)
        conditions = self.conditions.get(key)
        if conditions is None:
            started = time.perf_counter()
            with torch.no_grad():
                conditions = self.policy.encode_conditions([task.prompt], task.input_image[None]).cpu()
            self.encode_s += time.perf_counter() - started
            self.conditions.put(key, conditions)
        return conditions

    def generate(self, task: EditTask, seeds: list[int]) -> tuple[Conditions, torch.Tensor, np.ndarray]:
        spec = self.spec
        conditions = self.encoded(task)
        with torch.no_grad():  # not inference_mode: these latents become the learner's training data
            latents = self.policy.sample(conditions, seeds, adapter=SAMPLING, steps=spec.sampling_steps,
                                         guidance=spec.guidance or 0.0)  # fmt: skip
            images = self.policy.decode(latents)
        return conditions, latents.detach().cpu().clone(), images


async def _roll_out(
    rollout: Rollout, tasks: list[EditTask], epoch: int, keep_images: bool, samples: int
) -> RolloutBatch:
    """Generate group after group in a thread while earlier groups are scored on the event loop."""
    s = rollout.rewards
    # Read once: every group of this call carries the version its weights had when the call began.
    version = rollout.version
    batch = RolloutBatch(policy_version=version)
    started, encode_s, reused = time.perf_counter(), rollout.encode_s, rollout.conditions.hits
    async with rollout.connect() as (reward, judge):
        pending: list[tuple[EditTask, list[int], torch.Tensor, Conditions, np.ndarray, asyncio.Task[GroupRewards]]] = []
        for task in tasks:
            seeds = [sample_seed(rollout.run_seed, epoch, task.prompt_id, k) for k in range(samples)]
            t0 = time.perf_counter()
            conditions, latents, images = await asyncio.to_thread(rollout.generate, task, seeds)
            batch.sample_s += time.perf_counter() - t0
            scoring = asyncio.create_task(
                fetch_group_rewards(
                    reward, judge, group_id=f"e{epoch}-{task.prompt_id}-v{version}",
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
            batch.groups.append(RolloutGroup(task, seeds, latents, conditions, rewards, version, kept))
        batch.reward_wait_s = time.perf_counter() - waiting
    batch.total_s = time.perf_counter() - started
    batch.encode_s, batch.conditions_reused = rollout.encode_s - encode_s, rollout.conditions.hits - reused
    return batch

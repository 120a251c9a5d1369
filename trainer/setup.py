"""Putting a run together: its data as EditTasks, its policy factory, and its Ray actors.

`Workers` hides the Ray calls behind named operations so the loop in `trainer.loop` reads as the
method does: rollout, train_epoch, sync. The sampling weights go to every actor through one
`ray.put` per sync.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch

from motionnft.data.formats import load_dataset
from motionnft.data.records import Preprocess
from motionnft.data.validation import require_valid
from trainer.config import TrainConfig
from trainer.learner import LearnerSettings, learner_actor_class
from trainer.nft import NFTLossParams
from workers.policies.base import LoraSettings, Policy
from workers.rollout import RolloutSettings, rollout_actor_class
from workers.tasks import EditTask, RolloutBatch, RolloutGroup

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CHECKPOINT = REPO_ROOT / "checkpoints" / "tiny-kontext"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_policy(pretrained: str, *, device: str, dtype: str, lora: dict[str, Any], size: int) -> Policy:
    """The policy a config names: "tiny" is the committed tiny checkpoint, anything else a local path."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from workers.policies.flux_kontext import FluxKontextPolicy

    diffusers_logging.disable_progress_bar()  # one bar per component per actor buries the run's log
    transformers_logging.disable_progress_bar()

    path = TINY_CHECKPOINT if pretrained == "tiny" else Path(pretrained)
    if not path.exists():
        raise FileNotFoundError(
            f"no policy checkpoint at {path}" + (" (run `motionnft pretrain-tiny`)" if pretrained == "tiny" else "")
        )
    return FluxKontextPolicy.from_pretrained(
        path, device=device, dtype=DTYPES[dtype], lora=LoraSettings(**lora), size=size
    )


def policy_factory(config: TrainConfig, device: str | None = None) -> functools.partial[Policy]:
    p = config.policy
    lora = {"rank": p.lora.rank, "alpha": p.lora.alpha, "targets": tuple(p.lora.targets),
            "init": p.lora.init if p.lora.init == "gaussian" else True}  # fmt: skip
    return functools.partial(
        make_policy, p.pretrained, device=device or p.device, dtype=p.dtype, lora=lora, size=config.data.size
    )


def load_tasks(config: TrainConfig) -> tuple[list[EditTask], list[EditTask]]:
    """Train and eval tasks, validated up front (a bad row fails the run now, not mid-epoch)."""
    preprocess = Preprocess(size=config.data.size, center_crop=config.data.center_crop)
    out = []
    for path in (config.data.train_path, config.data.eval_path):
        if path is None:
            raise ValueError("data.train_path and data.eval_path must name datasets (see `motionnft data synth`)")
        records = load_dataset(Path(path))
        require_valid(records)
        samples = [r.load(preprocess) for r in records]
        out.append([EditTask(s.id, s.prompt, s.input_image, s.target_image, s.category) for s in samples])
    return out[0], out[1]


class Workers:
    """The rollout actors and the learner actor of one run."""

    def __init__(self, actors: list[Any], learner: Any) -> None:
        self.actors, self.learner = actors, learner

    def rollout(self, tasks: list[EditTask], epoch: int, keep_images: bool = False) -> list[RolloutBatch]:
        import ray

        chunks = [tasks[i :: len(self.actors)] for i in range(len(self.actors))]
        calls = [a.rollout.remote(c, epoch, keep_images) for a, c in zip(self.actors, chunks, strict=True) if c]
        return list(ray.get(calls))

    def train_epoch(self, groups: list[RolloutGroup], weights: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
        import ray

        if not groups:
            return {}
        return dict(ray.get(self.learner.train_epoch.remote(groups, weights, valid)))

    def sync(self) -> int:
        """The learner's `old` update, then its weights to every actor (one object in Ray's store)."""
        import ray

        version, weights = ray.get(self.learner.end_epoch.remote())
        self._broadcast(version, weights)
        return int(version)

    def _broadcast(self, version: int, weights: dict[str, torch.Tensor]) -> None:
        import ray

        ref = ray.put(weights)
        ray.get([a.set_sampling_weights.remote(version, ref) for a in self.actors])

    def sample_with(self, weights: dict[str, torch.Tensor], tasks: list[EditTask], epoch: int) -> list[RolloutGroup]:
        """Roll out `tasks` with `weights` as the sampling adapter, then restore the learner's `old`."""
        import ray

        self._broadcast(-1, weights)
        try:
            batches = self.rollout(tasks, epoch, keep_images=True)
        finally:
            version, old = ray.get(self.learner.sampling_weights.remote())
            self._broadcast(version, old)
        order = {t.prompt_id: i for i, t in enumerate(tasks)}
        return sorted((g for b in batches for g in b.groups), key=lambda g: order[g.task.prompt_id])

    def close(self) -> None:
        """Stop the run's actors (Ray itself stays up for whoever started it)."""
        import ray

        for actor in [*self.actors, self.learner]:
            ray.kill(actor)

    def ema_weights(self) -> dict[str, torch.Tensor]:
        import ray

        return dict(ray.get(self.learner.ema_weights.remote()))

    def learner_state(self) -> dict[str, Any]:
        import ray

        return dict(ray.get(self.learner.state_dict.remote()))

    def load_learner_state(self, state: dict[str, Any]) -> None:
        import ray

        ray.get(self.learner.load_state_dict.remote(state))
        version, weights = ray.get(self.learner.sampling_weights.remote())
        self._broadcast(version, weights)


def local_ray_environment() -> None:
    """A local Ray stays on loopback, sends no usage stats and needs no token (on by default since Ray 2.60)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def start_workers(config: TrainConfig) -> Workers:
    """A local Ray (unless `ray.address` names a cluster), the rollout actors and the learner."""
    import ray

    local_ray_environment()
    if not ray.is_initialized():
        # A local Ray binds to loopback only; a cluster address brings its own node address.
        node_ip = "127.0.0.1" if config.ray.address is None else None
        ray.init(address=config.ray.address, num_cpus=config.ray.num_cpus, include_dashboard=False,
                 _node_ip_address=node_ip)  # fmt: skip
    rollout = RolloutSettings(
        samples_per_prompt=config.data.samples_per_prompt, steps=config.policy.sampling_steps,
        guidance=config.policy.guidance or 0.0, run_seed=config.run.seed, reward_url=config.reward.reward_url,
        judge_url=config.reward.judge_url, judge_rubric=config.reward.judge_rubric,
        timeout_s=config.reward.timeout_s, max_attempts=config.reward.max_attempts,
    )  # fmt: skip
    o, n = config.optim, config.nft
    learner = LearnerSettings(
        lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, eps=o.eps, grad_clip=o.grad_clip,
        grad_accum=o.grad_accum, ema_decay=o.ema, old_decay_rate=o.old_decay_rate, old_decay_cap=o.old_decay_cap,
        timesteps_per_sample=o.timesteps_per_sample, steps=config.policy.sampling_steps,
        guidance=config.policy.guidance or 0.0, seed=config.run.seed,
        nft=NFTLossParams(form=n.form, beta=n.beta, kl_weight=n.kl_weight, loss_scale=n.loss_scale,
                          adaptive_eps=n.adaptive_eps),
    )  # fmt: skip
    gpus = 1.0 if config.ray.learner_device.startswith("cuda") else 0.0
    actors = [
        rollout_actor_class().remote(policy_factory(config), rollout) for _ in range(config.ray.num_rollout_actors)
    ]
    learner_actor = learner_actor_class(gpus).remote(policy_factory(config, config.ray.learner_device), learner)
    workers = Workers(actors, learner_actor)
    workers.load_learner_state(ray.get(learner_actor.state_dict.remote()))  # actors start from the learner's `old`
    return workers

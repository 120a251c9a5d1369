"""The Ray side of a run: where its actors run, and what crosses to them.

`RunActors` hides the Ray calls behind named operations so `trainer.loop` reads as the method does:
rollout, train_epoch, sync. Weights never detour through the driver: the learner's new sampling
adapter (and the EMA weights evaluation samples with) are objects in Ray's store, handed to every
rollout actor by reference; only checkpoints bring the learner's state to the driver. What goes to
the learner is what it trains on (latents, conditions, weights, ids), not the groups' images.
"""

from __future__ import annotations

import os
from typing import Any

import ray
import torch

from trainer.config import TrainConfig
from trainer.learner import Learner
from workers.rollout import Rollout
from workers.tasks import EditTask, RolloutBatch, RolloutGroup

# (version, weights) of a sampling adapter, in Ray's object store.
WeightsRef = ray.ObjectRef


class RunActors:
    """The rollout actors and the learner actor of one run."""

    def __init__(self, rollouts: list[Any], learner: Any) -> None:
        self.rollouts, self.learner = rollouts, learner

    def rollout(self, tasks: list[EditTask], epoch: int, keep_images: bool = False) -> list[RolloutBatch]:
        """`tasks` spread round-robin over the rollout actors; their batches, in actor order."""
        chunks = [tasks[i :: len(self.rollouts)] for i in range(len(self.rollouts))]
        calls = [a.rollout.remote(c, epoch, keep_images) for a, c in zip(self.rollouts, chunks, strict=True) if c]
        return list(ray.get(calls))

    def train_epoch(self, groups: list[RolloutGroup], weights: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
        if not groups:
            return {}
        training = [g.for_learner() for g in groups]
        return dict(ray.get(self.learner.train_epoch.remote(training, weights, valid)))

    def sync(self) -> None:
        """The learner's `old` update; its new sampling weights go to every actor by reference."""
        self._broadcast(self.learner.end_epoch.remote())

    def ema_weights(self) -> WeightsRef:
        """(version -1, the EMA of the trained adapter), left in the object store."""
        return self.learner.ema_sampling.remote()

    def sample_with(self, weights: WeightsRef, tasks: list[EditTask], epoch: int) -> list[RolloutGroup]:
        """Roll out `tasks` with `weights` as the sampling adapter, then restore the learner's `old`."""
        self._broadcast(weights)
        try:
            batches = self.rollout(tasks, epoch, keep_images=True)
        finally:
            self._broadcast(self.learner.sampling_weights.remote())
        order = {t.prompt_id: i for i, t in enumerate(tasks)}
        return sorted((g for b in batches for g in b.groups), key=lambda g: order[g.task.prompt_id])

    def learner_state(self) -> dict[str, Any]:
        """Everything a checkpoint holds of the learner (to the driver: it writes the file)."""
        return dict(ray.get(self.learner.state_dict.remote()))

    def load_learner_state(self, state: dict[str, Any]) -> None:
        ray.get(self.learner.load_state_dict.remote(state))
        self._broadcast(self.learner.sampling_weights.remote())

    def close(self) -> None:
        """Stop the run's actors (Ray itself stays up for whoever started it)."""
        for actor in [*self.rollouts, self.learner]:
            ray.kill(actor)

    def _broadcast(self, weights: WeightsRef) -> None:
        # A top-level ObjectRef argument reaches each actor as its value, fetched from the store.
        ray.get([a.set_sampling_weights.remote(weights) for a in self.rollouts])


def local_ray_environment() -> None:
    """A local Ray stays on loopback, sends no usage stats and needs no token (on by default since Ray 2.60)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def start_actors(config: TrainConfig) -> RunActors:
    """A local Ray (unless `ray.address` names a cluster), the rollout actors and the learner.

    Every actor builds its own policy from `config.policy`; the rollout actors then take the
    learner's sampling adapter by reference, so all start from the same weights.
    """
    local_ray_environment()
    if not ray.is_initialized():
        # A local Ray binds to loopback only; a cluster address brings its own node address.
        node_ip = "127.0.0.1" if config.ray.address is None else None
        ray.init(address=config.ray.address, num_cpus=config.ray.num_cpus, include_dashboard=False,
                 _node_ip_address=node_ip)  # fmt: skip
    size, seed = config.data.size, config.run.seed
    rollout_actor = ray.remote(num_cpus=1)(Rollout)
    k = config.data.samples_per_prompt
    rollouts = [
        rollout_actor.remote(config.policy, config.reward, size=size, samples_per_prompt=k, run_seed=seed)
        for _ in range(config.ray.num_rollout_actors)
    ]
    gpus = 1.0 if config.ray.learner_device.startswith("cuda") else 0.0
    learner: Any = ray.remote(num_cpus=1, num_gpus=gpus)(Learner).remote(
        config.policy, config.optim, config.nft, size=size, seed=seed, device=config.ray.learner_device
    )
    actors = RunActors(rollouts, learner)
    actors._broadcast(learner.sampling_weights.remote())
    return actors

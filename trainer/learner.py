"""The learner: applies the DiffusionNFT update to the trainable LoRA (`default`) from scored rollouts.

It holds its own policy with both adapters: `default` (trained), `old` (the sampling policy the
rollout actors use) and the frozen base (adapters disabled) as the KL reference. Per epoch it
trains every valid sample at `timesteps_per_sample` of the sampling schedule's timesteps, in a
shuffled order, each with fresh noise; then `end_epoch` moves `old` toward `default` with
decay = min(rate * step, cap) and hands the new sampling weights back. An EMA of `default` is kept
for evaluation and export. All randomness comes from one seeded generator saved in checkpoints.

Shapes: latents (K, N, C) packed; t (K,) in [0, 1]; weights (G, K) in [0, 1].
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainer.nft import NFTLossParams, interpolate, nft_loss
from trainer.schedules import EMA, old_decay
from workers.policies.base import Policy
from workers.tasks import RolloutGroup


@dataclass(frozen=True)
class LearnerSettings:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    eps: float = 1e-8
    grad_clip: float = 1.0
    grad_accum: int = 1
    ema_decay: float = 0.9
    old_decay_rate: float = 0.001
    old_decay_cap: float = 0.5
    timesteps_per_sample: int = 5
    steps: int = 6
    guidance: float = 2.5
    seed: int = 0
    nft: NFTLossParams = field(default_factory=NFTLossParams)


class Learner:
    """The update, usable without Ray; `learner_actor_class()` wraps it as an actor."""

    def __init__(self, policy_factory: Callable[[], Policy], settings: LearnerSettings) -> None:
        torch.set_num_threads(1)
        self.policy = policy_factory()
        self.settings = settings
        self.parameters = [p for p in self.policy.trainable_parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay, eps=settings.eps
        )
        self.ema = EMA(settings.ema_decay)  # kept on the policy's device: no host copy per step
        self.ema.update(self.policy.adapter_parameters("default"))
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.step = 0  # optimizer steps taken
        self.version = 0  # sampling-weights version handed to the actors

    def sampling_weights(self) -> tuple[int, dict[str, torch.Tensor]]:
        return self.version, self.policy.adapter_state("old")

    def train_epoch(self, groups: list[RolloutGroup], weights: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
        """One pass of the NFT update over `groups`; `weights` (G, K) optimality weights, `valid` (G,)."""
        s = self.settings
        timesteps = self.policy.timesteps(s.steps)
        order = torch.randperm(len(timesteps), generator=self.generator)[: s.timesteps_per_sample].tolist()
        totals: dict[str, float] = defaultdict(float)
        micro = 0
        for j in order:
            for g, group in enumerate(groups):
                metrics = self._micro_step(group, float(timesteps[j]), weights[g], bool(valid[g]))
                for key, value in metrics.items():
                    totals[key] += value
                micro += 1
                if micro % s.grad_accum == 0:
                    totals["grad_norm"] += self._optimizer_step()
        if micro % s.grad_accum:
            totals["grad_norm"] += self._optimizer_step()
        steps = max(1, -(-micro // s.grad_accum))
        means = {k: v / (steps if k == "grad_norm" else max(1, micro)) for k, v in totals.items()}
        return {**means, "optimizer_steps": float(self.step)}

    def _micro_step(self, group: RolloutGroup, t: float, weight: torch.Tensor, valid: bool) -> dict[str, float]:
        s = self.settings
        x0 = group.latents
        k = x0.shape[0]
        conditions = group.conditions.repeat(k)
        noise = torch.randn(x0.shape, generator=self.generator)
        times = torch.full((k,), t)
        x_t = interpolate(x0, noise, times)
        v_theta = self.policy.velocity(x_t, times, conditions, adapter="default", guidance=s.guidance)
        with torch.no_grad():
            v_old = self.policy.velocity(x_t, times, conditions, adapter="old", guidance=s.guidance)
            v_ref = self.policy.velocity(x_t, times, conditions, adapter=None, guidance=s.guidance)
        valid_mask = torch.full((k,), valid, dtype=torch.bool)
        result = nft_loss(v_theta, v_old, v_ref, x0, noise, times, weight.float(), valid_mask, s.nft)
        (result.loss / s.grad_accum).backward()
        return {
            "loss": float(result.loss.detach()),
            "positive": float(result.positive),
            "negative": float(result.negative),
            "kl": float(result.kl),
            "x0_norm": float(result.x0_norm),
        }

    def _optimizer_step(self) -> float:
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.settings.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.ema.update(self.policy.adapter_parameters("default"))
        return float(norm)

    def end_epoch(self) -> tuple[int, dict[str, torch.Tensor]]:
        """old <- decay * old + (1 - decay) * default; returns the new sampling weights and their version."""
        decay = old_decay(self.step, self.settings.old_decay_rate, self.settings.old_decay_cap)
        self.policy.blend_adapter("old", "default", decay)
        self.version += 1
        return self.sampling_weights()

    def ema_weights(self) -> dict[str, torch.Tensor]:
        """CPU copies of the EMA of `default`: the weights evaluation samples with."""
        return {name: value.detach().to("cpu", copy=True) for name, value in self.ema.shadow.items()}

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit-exactly."""
        return {
            "default": self.policy.adapter_state("default"),
            "old": self.policy.adapter_state("old"),
            "ema": {**self.ema.state_dict(), "shadow": self.ema_weights()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "step": self.step,
            "version": self.version,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_adapter_state("default", state["default"])
        self.policy.load_adapter_state("old", state["old"])
        device = self.parameters[0].device  # checkpoints load on the CPU; the EMA lives beside the weights
        self.ema.load_state_dict(
            {**state["ema"], "shadow": {k: v.to(device) for k, v in state["ema"]["shadow"].items()}}
        )
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step, self.version = int(state["step"]), int(state["version"])


def learner_actor_class(num_gpus: float = 0.0):
    """`Learner` as a Ray actor on a GPU when `num_gpus` > 0 (imported lazily)."""
    import ray

    return ray.remote(num_cpus=1, num_gpus=num_gpus)(Learner)

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

import copy
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

from trainer.config import NFTConfig, OptimConfig
from trainer.nft import interpolate, nft_loss
from trainer.schedules import EMA, old_decay
from workers.policies.base import SAMPLING, TRAINABLE, Policy
from workers.policies.factory import PolicySpec, build_policy
from workers.tasks import TrainingGroup


class Learner:
    """The update, usable without Ray; `learner_actor_class()` wraps it as an actor."""

    def __init__(
        self,
        policy: PolicySpec,
        optim: OptimConfig,
        nft: NFTConfig,
        *,
        size: int,
        seed: int,
        device: str | None = None,
        policy_factory: Callable[[], Policy] | None = None,
    ) -> None:
        """The run's own config sections, validated once when the config was loaded; the policy is
        built here from `policy` (or by `policy_factory`, for tests), on `device` (default: the spec's)."""
        torch.set_num_threads(1)
        self.policy = policy_factory() if policy_factory else build_policy(policy, size=size, device=device)
        self.spec, self.optim = policy, optim
        self.nft = nft.loss_params()
        self.guidance = policy.guidance or 0.0
        self.parameters = [p for p in self.policy.trainable_parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay, eps=optim.eps
        )
        self.ema = EMA(optim.ema)  # kept on the policy's device: no host copy per step
        self.ema.update(self.policy.adapter_parameters(TRAINABLE))
        self.generator = torch.Generator().manual_seed(seed)
        self.step = 0  # optimizer steps taken
        self.version = 0  # sampling-weights version handed to the actors

    def sampling_weights(self) -> tuple[int, dict[str, torch.Tensor]]:
        return self.version, self.policy.adapter_state(SAMPLING)

    def train_epoch(self, groups: list[TrainingGroup], weights: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
        """One pass of the NFT update over `groups`; `weights` (G, K) optimality weights, `valid` (G,)."""
        s = self.optim
        timesteps = self.policy.timesteps(self.spec.sampling_steps)
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

    def _micro_step(self, group: TrainingGroup, t: float, weight: torch.Tensor, valid: bool) -> dict[str, float]:
        x0 = group.latents
        k = x0.shape[0]
        conditions = group.conditions.repeat(k)
        noise = torch.randn(x0.shape, generator=self.generator)
        times = torch.full((k,), t)
        x_t = interpolate(x0, noise, times)
        g = self.guidance
        v_theta = self.policy.velocity(x_t, times, conditions, adapter=TRAINABLE, guidance=g)
        with torch.no_grad():
            v_old = self.policy.velocity(x_t, times, conditions, adapter=SAMPLING, guidance=g)
            v_ref = self.policy.velocity(x_t, times, conditions, adapter=None, guidance=g)
        valid_mask = torch.full((k,), valid, dtype=torch.bool)
        result = nft_loss(v_theta, v_old, v_ref, x0, noise, times, weight.float(), valid_mask, self.nft)
        (result.loss / self.optim.grad_accum).backward()
        return {
            "loss": float(result.loss.detach()),
            "positive": float(result.positive),
            "negative": float(result.negative),
            "kl": float(result.kl),
            "x0_norm": float(result.x0_norm),
        }

    def _optimizer_step(self) -> float:
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.ema.update(self.policy.adapter_parameters(TRAINABLE))
        return float(norm)

    def end_epoch(self) -> tuple[int, dict[str, torch.Tensor]]:
        """old <- decay * old + (1 - decay) * default; returns the new sampling weights and their version."""
        decay = old_decay(self.step, self.optim.old_decay_rate, self.optim.old_decay_cap)
        self.policy.blend_adapter(SAMPLING, TRAINABLE, decay)
        self.version += 1
        return self.sampling_weights()

    def ema_weights(self) -> dict[str, torch.Tensor]:
        """CPU copies of the EMA of `default`: the weights evaluation samples with."""
        return {name: value.detach().to("cpu", copy=True) for name, value in self.ema.shadow.items()}

    def ema_sampling(self) -> tuple[int, dict[str, torch.Tensor]]:
        """The EMA weights as a sampling adapter (version -1: not a training version)."""
        return -1, self.ema_weights()

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit-exactly."""
        return {
            TRAINABLE: self.policy.adapter_state(TRAINABLE),
            SAMPLING: self.policy.adapter_state(SAMPLING),
            "ema": {**self.ema.state_dict(), "shadow": self.ema_weights()},
            # A copy: the optimizer's own dict holds its live moment tensors, which the next step changes.
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "step": self.step,
            "version": self.version,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_adapter_state(TRAINABLE, state[TRAINABLE])
        self.policy.load_adapter_state(SAMPLING, state[SAMPLING])
        device = self.parameters[0].device  # checkpoints load on the CPU; the EMA lives beside the weights
        self.ema.load_state_dict(
            {**state["ema"], "shadow": {k: v.to(device) for k, v in state["ema"]["shadow"].items()}}
        )
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step, self.version = int(state["step"]), int(state["version"])

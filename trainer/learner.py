"""The learner: applies the DiffusionNFT update to the trainable LoRA (`default`) from scored rollouts.

It holds its own policy with both adapters: `default` (trained), `old` (the sampling policy the
rollout actors use) and the frozen base (adapters disabled) as the KL reference. Per epoch it
trains every valid sample at `timesteps_per_sample` of the sampling schedule's timesteps, in a
shuffled order per group, each with fresh noise; then `end_epoch` moves `old` toward `default`
with decay = min(rate * step, cap) and hands the new sampling weights back. An EMA of `default` is
kept for evaluation and export.

One learner or N data-parallel ones (`join_data_parallel`) take the same steps: the epoch's plan
(`update_plan`: which micro-steps each optimizer step covers) depends only on the groups and the
config, each rank runs its share of every step, and the gradients are summed over the ranks before
clipping. A group's timestep order and each micro-step's noise come from (run seed, epoch, group,
timestep) alone (`seeded_generator`), never from what a process drew before, so N learners and a
resumed run draw exactly what one uninterrupted learner draws.

Shapes: latents (K, N, C) packed; t (K,) in [0, 1]; weights (G, K) in [0, 1].
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from typing import Any

import torch

from trainer.config import NFTConfig, OptimConfig
from trainer.distributed import DataParallel, open_rendezvous, share
from trainer.nft import interpolate, nft_loss
from trainer.schedules import EMA, old_decay
from workers.policies.base import SAMPLING, TRAINABLE, Policy
from workers.policies.factory import PolicySpec, build_policy
from workers.tasks import TrainingGroup

METRICS = ("loss", "positive", "negative", "kl", "x0_norm")  # per micro-step, averaged over the epoch
Unit = tuple[int, int]  # (group index in the epoch, position in that group's timestep order)


def update_plan(groups: int, positions: int, grad_accum: int) -> list[list[Unit]]:
    """The epoch's optimizer steps, each a list of `grad_accum` micro-steps (the last may be shorter).

    Position 0 of every group, then position 1, ...: the same plan for one learner or N.
    """
    units = [(g, p) for p in range(positions) for g in range(groups)]
    return [units[i : i + grad_accum] for i in range(0, len(units), grad_accum)]


def seeded_generator(seed: int, epoch: int, *key: int) -> torch.Generator:
    """A CPU generator seeded by sha256 of (seed, epoch, *key): the same in every process."""
    text = ":".join(str(part) for part in ("learner", seed, epoch, *key)).encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1)


class Learner:
    """The update, usable without Ray; `trainer.actors` runs N of them as Ray actors."""

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
        self.spec, self.optim, self.seed = policy, optim, seed
        self.device = device or policy.device
        self.nft = nft.loss_params()
        self.guidance = policy.guidance or 0.0
        self.parameters = [p for p in self.policy.trainable_parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay, eps=optim.eps
        )
        self.ema = EMA(optim.ema)  # kept on the policy's device: no host copy per step
        self.ema.update(self.policy.adapter_parameters(TRAINABLE))
        self.step = 0  # optimizer steps taken
        self.version = 0  # sampling-weights version handed to the actors
        self.parallel: DataParallel | None = None  # None: the only learner
        self._rendezvous: Any = None  # rank 0's store, held until every rank has joined
        self._epoch_start: dict[str, Any] | None = None  # state before this epoch's update (N > 1)

    # -- data parallelism (N > 1 learners) --

    def open_rendezvous(self, host: str, timeout_s: float) -> int:
        """Rank 0: open the group's store on `host`; returns the port the others join at."""
        self._rendezvous = open_rendezvous(host, timeout_s)
        return int(self._rendezvous.port)

    def join_data_parallel(
        self, rank: int, world_size: int, host: str, port: int, *, timeout_s: float, rendezvous_timeout_s: float
    ) -> None:
        """Join the learners' process group, then prove every rank starts from the same adapters."""
        self.parallel = DataParallel.join(
            rank=rank, world_size=world_size, host=host, port=port, device=self.device, timeout_s=timeout_s,
            rendezvous_timeout_s=rendezvous_timeout_s, store=self._rendezvous if rank == 0 else None,
        )  # fmt: skip
        self.parallel.check_same(self._adapter_tensors(), "initial adapters")

    def roll_back(self) -> bool:
        """Restore the state from before the last `train_epoch` (after a peer was lost); False if none."""
        if self._epoch_start is None:
            return False
        self.load_state_dict(self._epoch_start)
        return True

    # -- the update --

    def sampling_weights(self) -> tuple[int, dict[str, torch.Tensor]]:
        return self.version, self.policy.adapter_state(SAMPLING)

    def train_epoch(
        self, groups: list[TrainingGroup], weights: torch.Tensor, valid: torch.Tensor, *, epoch: int
    ) -> dict[str, float]:
        """One pass of the NFT update over `groups` (every rank gets all of them and trains its share);
        `weights` (G, K) optimality weights, `valid` (G,), `epoch` the run's epoch (seeds the noise)."""
        s = self.optim
        if self.parallel is not None:  # what a surviving rank rolls back to if a peer is lost
            self._epoch_start = self.state_dict()
        timesteps = self.policy.timesteps(self.spec.sampling_steps)
        orders = [
            torch.randperm(len(timesteps), generator=seeded_generator(self.seed, epoch, g))[: s.timesteps_per_sample]
            for g in range(len(groups))
        ]
        rank, world = (self.parallel.rank, self.parallel.world_size) if self.parallel else (0, 1)
        sums = torch.zeros(len(METRICS) + 1, dtype=torch.float64)  # metric sums, then the micro-step count
        grad_norm = 0.0
        plan = update_plan(len(groups), s.timesteps_per_sample, s.grad_accum)
        for units in plan:
            for g, position in share(units, rank, world):
                j = int(orders[g][position])
                noise = torch.randn(groups[g].latents.shape, generator=seeded_generator(self.seed, epoch, g, j))
                metrics = self._train_group(groups[g], float(timesteps[j]), noise, weights[g], bool(valid[g]))
                sums += torch.tensor([*(metrics[k] for k in METRICS), 1.0], dtype=torch.float64)
            grad_norm += self._optimizer_step()
        if self.parallel is not None:
            sums = self.parallel.sum(sums, "metrics all-reduce")
            self.parallel.check_same(self.policy.adapter_parameters(TRAINABLE).values(), f"`{TRAINABLE}` weights")
        means = {k: float(v) / max(1.0, float(sums[-1])) for k, v in zip(METRICS, sums.tolist(), strict=False)}
        return {**means, "grad_norm": grad_norm / max(1, len(plan)), "optimizer_steps": float(self.step)}

    def _train_group(
        self, group: TrainingGroup, t: float, noise: torch.Tensor, weight: torch.Tensor, valid: bool
    ) -> dict[str, float]:
        """One group at time `t`, in micro-batches of `optim.micro_batch` samples, gradients accumulated.

        Each micro-batch's loss counts by its share of the group (b / K), so the gradient is the
        whole group's mean loss whatever the micro-batch; `/ grad_accum` makes the step a mean too.
        """
        x0 = group.latents
        k = x0.shape[0]
        size = min(self.optim.micro_batch or k, k)
        totals = dict.fromkeys(METRICS, 0.0)
        for start in range(0, k, size):
            rows = slice(start, min(start + size, k))
            b = rows.stop - start
            conditions = group.conditions.repeat(b)
            times = torch.full((b,), t)
            x_t = interpolate(x0[rows], noise[rows], times)
            v_theta = self.policy.velocity(x_t, times, conditions, adapter=TRAINABLE, guidance=self.guidance)
            with torch.no_grad():
                v_old, v_ref = self._old_and_reference(x_t, times, conditions)
            valid_mask = torch.full((b,), valid, dtype=torch.bool)
            result = nft_loss(v_theta, v_old, v_ref, x0[rows], noise[rows], times, weight[rows].float(), valid_mask,
                              self.nft)  # fmt: skip
            (result.loss * (b / k / self.optim.grad_accum)).backward()
            for key, value in result.metrics().items():
                if key in totals:
                    totals[key] += value * b / k
        return totals

    def _old_and_reference(
        self, x_t: torch.Tensor, times: torch.Tensor, conditions: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(v_old, v_ref), both no-grad, from one batched forward (the policy's per-sample routing)."""
        return self.policy.old_and_reference_velocity(x_t, times, conditions, guidance=self.guidance)

    def _optimizer_step(self) -> float:
        if self.parallel is not None:  # clip the summed gradient, never one rank's part of it
            self.parallel.all_reduce_gradients(self.parameters)
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.ema.update(self.policy.adapter_parameters(TRAINABLE))
        return float(norm)

    def advance_old(self) -> int:
        """old <- decay * old + (1 - decay) * default; returns the new sampling-weights version."""
        decay = old_decay(self.step, self.optim.old_decay_rate, self.optim.old_decay_cap)
        self.policy.blend_adapter(SAMPLING, TRAINABLE, decay)
        self.version += 1
        return self.version

    def load_old(self, sampling: tuple[int, dict[str, torch.Tensor]]) -> int:
        """`sampling`'s weights become the `old` adapter (a pipelined update trains against the policy
        that drew its samples); the version counter is left alone: it counts `old` updates, not loads.
        Returns the loaded weights' version."""
        version, state = sampling
        self.policy.load_adapter_state(SAMPLING, state)
        return version

    def end_epoch(self) -> tuple[int, dict[str, torch.Tensor]]:
        """`advance_old`, then the new sampling weights and their version."""
        self.advance_old()
        return self.sampling_weights()

    def ema_weights(self) -> dict[str, torch.Tensor]:
        """CPU copies of the EMA of `default`: the weights evaluation samples with."""
        return {name: value.detach().to("cpu", copy=True) for name, value in self.ema.shadow.items()}

    def ema_sampling(self) -> tuple[int, dict[str, torch.Tensor]]:
        """The EMA weights as a sampling adapter (version -1: not a training version)."""
        return -1, self.ema_weights()

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit-exactly (the noise needs no state: see `seeded_generator`)."""
        return {
            TRAINABLE: self.policy.adapter_state(TRAINABLE),
            SAMPLING: self.policy.adapter_state(SAMPLING),
            "ema": {**self.ema.state_dict(), "shadow": self.ema_weights()},
            # A CPU copy: the optimizer's own dict holds its live moment tensors, which the next step
            # changes, on the device (a driver without a GPU could not even unpickle those).
            "optimizer": _on_cpu(self.optimizer.state_dict()),
            "step": self.step,
            "version": self.version,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`'s output (a checkpoint's "generator" entry, from before, is not needed)."""
        self.policy.load_adapter_state(TRAINABLE, state[TRAINABLE])
        self.policy.load_adapter_state(SAMPLING, state[SAMPLING])
        device = self.parameters[0].device  # checkpoints load on the CPU; the EMA lives beside the weights
        self.ema.load_state_dict(
            {**state["ema"], "shadow": {k: v.to(device) for k, v in state["ema"]["shadow"].items()}}
        )
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.version = int(state["step"]), int(state["version"])

    def _adapter_tensors(self) -> list[torch.Tensor]:
        return [*self.policy.adapter_parameters(TRAINABLE).values(), *self.policy.adapter_parameters(SAMPLING).values()]


def _on_cpu(value: Any) -> Any:
    """A deep copy of nested dicts, lists and tuples with every tensor copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_cpu(v) for v in value)
    return copy.deepcopy(value)

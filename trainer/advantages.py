"""Rewards to advantages and optimality weights, and prompt banning: pure math (docs/method.md section 4).

Tensor conventions:
- rewards are (G, K) floating tensors in [0, 1]: G groups (one per prompt), K samples each;
- a (G,) bool ``valid`` mask marks the groups whose rewards were all had; a dropped group (a reward
  that could not be had is an error, never a 0.0) is dropped whole, so its row may hold anything,
  NaN included, and is ignored;
- outputs are float32 (float64 stays float64) on the rewards' device.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

STD_EPS = 1e-4
"""Added to the global std before dividing (docs/method.md section 4)."""


# eq=False: a generated __eq__ would compare tensors with ==, whose truth value is ambiguous.
@dataclass(frozen=True, eq=False)
class Advantages:
    """Group-normalised advantages of a (G, K) reward batch.

    ``advantage`` (G, K): (r - group mean) / (global std + 1e-4), clipped to [-clip, clip]; 0 in
    invalid groups. ``weight`` (G, K): the optimality weight clamp(A / clip / 2 + 0.5, 0, 1); 0.5
    (neutral) in invalid groups. ``group_mean`` / ``group_std`` (G,): each group's reward mean and
    population std; NaN in invalid groups. ``global_std`` 0-dim: the population std of every reward
    of the valid groups (0 when none). ``valid`` (G,) bool: the mask the advantages were made with.
    """

    advantage: Tensor
    weight: Tensor
    group_mean: Tensor
    group_std: Tensor
    global_std: Tensor
    valid: Tensor


def optimality_weight(advantage: Tensor, clip: float = 5.0) -> Tensor:
    """w = clamp(A / clip / 2 + 0.5, 0, 1): maps [-clip, clip] linearly onto [0, 1]; any shape."""
    _check_clip(clip)
    return (advantage / clip / 2 + 0.5).clamp(0.0, 1.0)


def group_advantages(rewards: Tensor, valid: Tensor | None = None, *, clip: float = 5.0) -> Advantages:
    """Advantages of a (G, K) reward batch; ``valid`` (G,) bool, None = every group.

    Each reward is centred on its own group's mean and divided by the std of all valid rewards of
    the batch (population std, as numpy's default in the reference) plus 1e-4, then clipped.
    Raises ValueError for a non-finite reward in a valid group.
    """
    _check_clip(clip)
    valid = _check_rewards(rewards, valid)
    dtype = torch.promote_types(rewards.dtype, torch.float32)
    r = torch.where(valid[:, None], rewards.to(dtype), torch.zeros((), dtype=dtype, device=rewards.device))
    if not bool(torch.isfinite(r).all()):
        raise ValueError("rewards of valid groups must be finite (drop a group whose reward could not be had)")
    nan = torch.full((), math.nan, dtype=dtype, device=rewards.device)
    group_mean = r.mean(dim=1)
    group_std = r.std(dim=1, correction=0)
    kept = r[valid]
    global_std = kept.std(correction=0) if kept.numel() > 0 else torch.zeros((), dtype=dtype, device=r.device)
    advantage = ((r - group_mean[:, None]) / (global_std + STD_EPS)).clamp(-clip, clip)
    advantage = torch.where(valid[:, None], advantage, torch.zeros((), dtype=dtype, device=r.device))
    return Advantages(
        advantage=advantage,
        weight=optimality_weight(advantage, clip),
        group_mean=torch.where(valid, group_mean, nan),
        group_std=torch.where(valid, group_std, nan),
        global_std=global_std,
        valid=valid,
    )


def saturated(
    rewards: Tensor,
    std_threshold: float = 0.05,
    mean_threshold: float = 0.9,
    valid: Tensor | None = None,
) -> Tensor:
    """(G,) bool: groups to ban, population std < ``std_threshold`` and mean > ``mean_threshold``.

    Such a prompt is already solved: its advantages are near zero and it is not sampled again.
    Invalid groups (``valid`` False) are never saturated.
    """
    valid = _check_rewards(rewards, valid)
    # float64 on the CPU, so a group sitting exactly on a threshold is not tipped over by rounding.
    r = rewards.detach().to("cpu", torch.float64)
    std = r.std(dim=1, correction=0)
    mean = r.mean(dim=1)
    return valid & ((std < std_threshold) & (mean > mean_threshold)).to(valid.device)


def combine_rewards(components: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """sum_k weights[k] * components[k]: every component (G, K) of one shape; same keys in both.

    A weight without its component (or a component without its weight) is an error rather than a
    silent 0: a missing reward means a dropped group, never a zero reward.
    """
    if not components:
        raise ValueError("combine_rewards needs at least one reward component")
    if set(components) != set(weights):
        raise ValueError(f"reward components {sorted(components)} and weights {sorted(weights)} differ")
    shapes = {tuple(c.shape) for c in components.values()}
    if len(shapes) != 1:
        raise ValueError(f"reward components differ in shape: {sorted(shapes)}")
    for name, w in weights.items():
        if not math.isfinite(w):
            raise ValueError(f"reward weight {name!r} must be finite, got {w!r}")
    dtype = torch.float32
    for c in components.values():
        dtype = torch.promote_types(dtype, c.dtype)
    terms = [float(weights[name]) * components[name].to(dtype) for name in sorted(components)]
    return torch.stack(terms).sum(dim=0)


def reward_agreement(rewards: Tensor, mas: Tensor) -> dict[str, float]:
    """How the combined rewards (G, K) of an epoch's groups rank their edits against MotionEdit-Bench's
    MAS (G, K, 0-100) of the same edits: a reading of the reward, not used by the update.

    - ``mas``: the mean MAS of the edits;
    - ``best_mas_gain``: per group, the MAS of the edit the reward ranks first minus the group's mean
      MAS, averaged over groups. What the bench would gain if the policy made its best edit of K
      every time: near 0 when the group's edits are alike or the reward does not see what MAS sees;
      a gain that stays large while training goes on is headroom the update does not take.
    - ``reward_mas_corr``: the mean within-group Pearson correlation of reward and MAS, over the groups
      in which neither is constant (left out when there are none).
    """
    if rewards.shape != mas.shape or rewards.dim() != 2 or rewards.numel() == 0:
        shapes = f"{tuple(rewards.shape)} and {tuple(mas.shape)}"
        raise ValueError(f"rewards and mas must be the same non-empty (G, K), got {shapes}")
    r, m = rewards.double(), mas.double()
    best = m.gather(1, r.argmax(dim=1, keepdim=True)).squeeze(1)
    out = {"mas": float(m.mean()), "best_mas_gain": float((best - m.mean(dim=1)).mean())}
    rc, mc = r - r.mean(dim=1, keepdim=True), m - m.mean(dim=1, keepdim=True)
    scale = rc.norm(dim=1) * mc.norm(dim=1)
    varied = scale > 0
    if bool(varied.any()):
        out["reward_mas_corr"] = float(((rc * mc).sum(dim=1)[varied] / scale[varied]).mean())
    return out


class BanList:
    """The prompt ids banned for saturation (docs/method.md section 4): never sampled, never trained on.

    Stored in checkpoints as a sorted list of ids (`to_list` / `from_list`).
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: set[str] = set()
        for prompt_id in ids:
            self._ids.add(_check_id(prompt_id))

    def update(self, ids: Sequence[str], saturated_mask: Tensor | Sequence[bool]) -> list[str]:
        """Ban ``ids[i]`` where ``saturated_mask[i]``; returns the newly banned ids in input order."""
        mask = saturated_mask.tolist() if isinstance(saturated_mask, Tensor) else list(saturated_mask)
        if len(mask) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(mask)} mask entries")
        new: list[str] = []
        for prompt_id, banned in zip(ids, mask, strict=True):
            _check_id(prompt_id)
            if banned and prompt_id not in self._ids:
                self._ids.add(prompt_id)
                new.append(prompt_id)
        return new

    def mask(self, ids: Sequence[str]) -> Tensor:
        """(len(ids),) bool: True where the id is banned."""
        return torch.tensor([prompt_id in self._ids for prompt_id in ids], dtype=torch.bool)

    def to_list(self) -> list[str]:
        """The banned ids, sorted (JSON- and YAML-friendly)."""
        return sorted(self._ids)

    @classmethod
    def from_list(cls, ids: Iterable[str]) -> BanList:
        return cls(ids)

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_list())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BanList) and self._ids == other._ids

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BanList({self.to_list()!r})"


def _check_clip(clip: float) -> None:
    if not math.isfinite(clip) or clip <= 0:
        raise ValueError(f"clip must be finite and > 0, got {clip!r}")


def _check_rewards(rewards: Tensor, valid: Tensor | None) -> Tensor:
    if rewards.dim() != 2 or not rewards.is_floating_point():
        raise ValueError(f"rewards must be a floating (G, K) tensor, got {rewards.dtype} {tuple(rewards.shape)}")
    if valid is None:
        return torch.ones(rewards.shape[0], dtype=torch.bool, device=rewards.device)
    if valid.dtype != torch.bool or valid.shape != (rewards.shape[0],):
        raise ValueError(f"valid must be a ({rewards.shape[0]},) bool tensor, got {valid.dtype} {tuple(valid.shape)}")
    return valid.to(rewards.device)


def _check_id(prompt_id: object) -> str:
    if not isinstance(prompt_id, str) or not prompt_id:
        raise ValueError(f"prompt ids are non-empty strings, got {prompt_id!r}")
    return prompt_id

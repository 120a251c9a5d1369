"""Weight schedules of the NFT update: the old-policy decay, in-place blending, and the EMA.

docs/method.md section 5: after each epoch v_old <- decay * v_old + (1 - decay) * v_theta with
decay = min(0.001 * step, 0.5), and an EMA (0.9) of the trainable weights is kept for evaluation
and export. Pure tensor math on named weight tensors (the LoRA parameters, by name); no models.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor


def old_decay(step: int, rate: float = 0.001, cap: float = 0.5) -> float:
    """Decay of the old (sampling) policy after ``step`` updates: min(rate * step, cap).

    0 at the start (v_old becomes a copy of v_theta), then v_old lags v_theta more and more.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"rate must be finite and >= 0, got {rate!r}")
    if not 0.0 <= cap <= 1.0:
        raise ValueError(f"cap must be in [0, 1], got {cap!r}")
    return min(rate * step, cap)


@torch.no_grad()
def blend_(
    target: Mapping[str, Tensor] | Iterable[Tensor], source: Mapping[str, Tensor] | Iterable[Tensor], decay: float
) -> None:
    """In place: target <- decay * target + (1 - decay) * source, tensor by tensor.

    Mappings are matched by name (same keys required), iterables by position (same length). Each
    pair must have one shape; ``source`` is cast to the target's dtype and device. decay = 0 copies
    ``source``; decay = 1 leaves ``target`` as it is.
    """
    _check_decay(decay)
    for name, t, s in _pairs(target, source):
        if t.shape != s.shape:
            raise ValueError(f"{name}: target shape {tuple(t.shape)} != source shape {tuple(s.shape)}")
        t.mul_(decay).add_(s.to(device=t.device, dtype=t.dtype), alpha=1.0 - decay)


class EMA:
    """Exponential moving average of named tensors: shadow <- decay * shadow + (1 - decay) * value.

    The first `update` copies the values. Floating tensors are averaged in float32 at least (a
    bf16 shadow would round away most of each 10% step) and cast back by `copy_to`.
    """

    def __init__(self, decay: float = 0.9) -> None:
        _check_decay(decay)
        self.decay = decay
        self.num_updates = 0
        self._shadow: dict[str, Tensor] = {}

    @property
    def shadow(self) -> Mapping[str, Tensor]:
        """The averaged tensors by name (empty before the first update); do not modify."""
        return self._shadow

    @torch.no_grad()
    def update(self, named_tensors: Mapping[str, Tensor]) -> None:
        """Fold in the current values; after the first call the names must stay the same."""
        if not self._shadow:
            if not named_tensors:
                raise ValueError("EMA.update needs at least one tensor")
            self._shadow = {name: _master_copy(value) for name, value in named_tensors.items()}
        else:
            blend_(self._shadow, named_tensors, self.decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, params: Mapping[str, Tensor]) -> None:
        """Write the averages into ``params`` in place (cast to each one's dtype and device)."""
        if not self._shadow:
            raise RuntimeError("EMA.copy_to before the first update")
        blend_(params, self._shadow, 0.0)

    def state_dict(self) -> dict[str, Any]:
        """{"decay", "num_updates", "shadow": {name: tensor}}, for checkpoints (torch.save / safetensors)."""
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": {name: value.detach().clone() for name, value in self._shadow.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) != {"decay", "num_updates", "shadow"}:
            raise ValueError(f"EMA state needs keys decay, num_updates, shadow; got {sorted(state)}")
        decay, num_updates = float(state["decay"]), int(state["num_updates"])
        _check_decay(decay)
        self.decay = decay
        self.num_updates = num_updates
        self._shadow = {name: _master_copy(value) for name, value in state["shadow"].items()}


def _master_copy(value: Tensor) -> Tensor:
    dtype = torch.promote_types(value.dtype, torch.float32) if value.is_floating_point() else value.dtype
    return value.detach().to(dtype=dtype, copy=True)


def _check_decay(decay: float) -> None:
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay!r}")


def _pairs(
    target: Mapping[str, Tensor] | Iterable[Tensor], source: Mapping[str, Tensor] | Iterable[Tensor]
) -> list[tuple[str, Tensor, Tensor]]:
    mixed = TypeError("target and source must both be mappings (by name) or both be iterables (by position)")
    if isinstance(target, Mapping):
        if not isinstance(source, Mapping):
            raise mixed
        if set(target) != set(source):
            missing, extra = sorted(set(target) - set(source)), sorted(set(source) - set(target))
            raise ValueError(f"names differ: missing from source {missing}, not in target {extra}")
        return [(name, target[name], source[name]) for name in target]
    if isinstance(source, Mapping):
        raise mixed
    targets: list[Tensor] = list(target)
    sources: list[Tensor] = list(source)
    if len(targets) != len(sources):
        raise ValueError(f"{len(targets)} target tensors but {len(sources)} source tensors")
    return [(f"tensor {i}", t, s) for i, (t, s) in enumerate(zip(targets, sources, strict=True))]

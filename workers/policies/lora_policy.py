"""What the two policy families share: adapter routing around a forward, the sampling loop, the
encoders' visits to the device, and the adapter operations of the `Policy` protocol, all delegated
to `LoraAdapters`. A family subclasses `LoraPolicy` and supplies its own forward and conditions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from workers.policies.adapters import LoraAdapters
from workers.policies.base import TRAINABLE, LoraSettings
from workers.policies.solver import heun_sample


class LoraPolicy:
    """Base of `FluxKontextPolicy` and `QwenImageEditPolicy`: their `__init__` calls `_place` and `_add_adapters`."""

    adapters: LoraAdapters
    device: torch.device
    dtype: torch.dtype
    offload_encoders: bool
    encoders: tuple[nn.Module, ...]
    transformer: nn.Module

    def _place(self, pipeline: Any, encoders: tuple[nn.Module, ...], device: torch.device | str, dtype: torch.dtype,
               offload_encoders: bool) -> None:  # fmt: skip
        """Put `pipeline` on `device` in `dtype` with its `encoders` frozen; with `offload_encoders` (on an
        accelerator only: on the CPU nothing is saved) the encoders wait on the CPU between visits."""
        self.device, self.dtype = torch.device(device), dtype
        self.offload_encoders = offload_encoders and self.device.type != "cpu"
        self.encoders = encoders
        if self.offload_encoders:
            pipeline.transformer.to(device)
            for part in encoders:
                part.to("cpu")
        else:
            pipeline.to(device)
        if any(part.dtype != dtype for part in (pipeline.transformer, *encoders)):
            pipeline.to(dtype=dtype)
        for part in encoders:
            part.requires_grad_(False).eval()

    def _add_adapters(self, transformer: nn.Module, lora: LoraSettings | None, targets: tuple[str, ...],
                      gradient_checkpointing: bool) -> None:  # fmt: skip
        """The `default` / `old` LoRA adapters on `transformer` (`targets` unless `lora` names its own)."""
        self.transformer = transformer
        lora = lora or LoraSettings()
        if lora.targets is None:
            lora = lora.model_copy(update={"targets": targets})
        self.adapters = LoraAdapters(transformer, lora)
        if gradient_checkpointing:
            transformer.enable_gradient_checkpointing()  # type: ignore[operator]

    @contextmanager
    def _visiting(self, *parts: nn.Module) -> Iterator[None]:
        """With `offload_encoders`, `parts` on the device for the block and back on the CPU after it."""
        for part in parts if self.offload_encoders else ():
            part.to(self.device)
        try:
            yield
        finally:
            for part in parts if self.offload_encoders else ():
                part.to("cpu")

    def _routed(self, adapter: str | None, forward: Callable[[], Tensor]) -> Tensor:
        """`forward()` under `adapter`'s routing, with grad only for the trainable adapter; float32."""
        grad = adapter == TRAINABLE and torch.is_grad_enabled()
        previous = self.adapters.active
        self.adapters.activate(adapter)
        try:
            with torch.set_grad_enabled(grad):
                return forward().float()
        finally:
            # A no-grad call leaves the routing as it found it: with gradient checkpointing the backward of
            # an earlier `default` forward recomputes its blocks under whatever routing is active then.
            if not grad:
                self.adapters.activate(previous)

    def _solve(self, velocity: Callable[[Tensor, float], Tensor], noise: Tensor, times: list[float],
               adapter: str | None) -> Tensor:  # fmt: skip
        """Heun from `noise` over `times` (ending at 0) with `adapter` routed once for every step."""
        previous = self.adapters.active
        self.adapters.activate(adapter)  # once for all the solver's steps (each velocity call then finds it)
        try:
            return heun_sample(velocity, noise.to(self.device), times)
        finally:
            self.adapters.activate(previous)

    # -- adapters -------------------------------------------------------------------------------

    def adapter_state(self, name: str) -> dict[str, Tensor]:
        return self.adapters.state(name)

    def adapter_parameters(self, name: str) -> dict[str, nn.Parameter]:
        return self.adapters.parameters(name)

    def load_adapter_state(self, name: str, state: dict[str, Tensor]) -> None:
        self.adapters.load_state(name, state)

    def copy_adapter(self, src: str, dst: str) -> None:
        self.adapters.copy(src, dst)

    def blend_adapter(self, dst: str, src: str, decay: float) -> None:
        """dst <- decay * dst + (1 - decay) * src (the per-epoch update of the sampling adapter)."""
        self.adapters.blend(dst, src, decay)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.adapters.trainable_parameters()

"""What the trainer and the rollout actors know about a policy: conditions, the Policy protocol, seeds.

Tensor conventions (every policy module follows them):
- Latents are *packed*: (B, N, C), N tokens of C channels (FLUX packs 2x2 latent patches: C = 4 x
  latent channels). Clean latents are x0; noise is n; time t is in [0, 1] with t = 1 pure noise and
  t = 0 clean; x_t = (1 - t) x0 + t n and the velocity is v = dx_t/dt = n - x0.
- Images are uint8 (B, H, W, 3) numpy arrays in and out.
- Conditions hold everything the velocity needs besides x_t and t, for B samples, as plain tensors
  (picklable, so they ship through Ray): `prompt_embeds` (B, L, D), `pooled_prompt_embeds` (B, P),
  `image_latents` (B, M, C) the packed latents of the input image; `text_ids` (L, 3) and `image_ids`
  (M, 3) are position ids shared by the whole batch; `latent_shape` is the (channels, height, width)
  of one *unpacked* generated latent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

# The LoRA adapters every policy carries: `default` is trained, `old` samples; None is the frozen base.
TRAINABLE = "default"
SAMPLING = "old"
ADAPTERS = (TRAINABLE, SAMPLING)

# peft's `init_lora_weights` for each named init: "gaussian" (A Gaussian, B zero: a no-op at the
# start, the method's choice), "zeros" (peft's default: Kaiming A, B zero, also a no-op at the start)
# and "random" (both factors random: adapters change the output at once; for tests).
LORA_INIT: dict[str, Literal["gaussian"] | bool] = {"gaussian": "gaussian", "zeros": True, "random": False}


class LoraSettings(BaseModel):
    """LoRA on the denoiser's attention projections (docs/method.md 5: r 32, alpha 64, Gaussian init)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rank: int = Field(default=32, ge=1)
    alpha: int = Field(default=64, ge=1)
    # None: the family's own projections (each policy family names its attention modules).
    targets: tuple[str, ...] | None = Field(default=None, min_length=1)
    init: Literal["gaussian", "zeros", "random"] = Field(default="gaussian", description="See LORA_INIT.")
    # Seeds the initial LoRA weights (the CPU RNG, forked: the global state is left alone), so every
    # process that builds the policy starts from the same adapters.
    seed: int = 0


@runtime_checkable
class Conditions(Protocol):
    """What the trainer may do with a policy's conditions: nothing but count, copy to the CPU and
    repeat them. Their contents are the family's own (FLUX's are `FluxConditions`)."""

    def __len__(self) -> int: ...

    def cpu(self) -> Conditions:
        """Detached CPU copies, for shipping through Ray."""
        ...

    def repeat(self, k: int) -> Conditions:
        """Each sample k times, sample-major."""
        ...


class BatchedConditions:
    """Shared by the families' condition dataclasses: `BATCHED` names the per-sample tensors (first
    axis B), `SHARED` those every sample shares (position ids), `latent_shape` the generated latent's
    (C, H, W). Every operation returns a new instance (`dataclasses.replace`)."""

    BATCHED: ClassVar[tuple[str, ...]] = ()
    SHARED: ClassVar[tuple[str, ...]] = ()
    latent_shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        sizes = {getattr(self, name).shape[0] for name in self.BATCHED}
        if len(sizes) != 1:
            raise ValueError(f"batched condition tensors disagree on the batch size: {sorted(sizes)}")

    def __len__(self) -> int:
        return int(getattr(self, self.BATCHED[0]).shape[0])

    @property
    def tokens(self) -> int:
        """N, the number of packed tokens of one generated latent."""
        _, height, width = self.latent_shape
        return (height // 2) * (width // 2)

    def _map(self, batched: Callable[[Tensor], Tensor], shared: Callable[[Tensor], Tensor] | None = None) -> Self:
        """Apply `batched` to the per-sample tensors and `shared` (default: keep) to the shared ones."""
        changes: dict[str, Any] = {name: batched(getattr(self, name)) for name in self.BATCHED}
        if shared is not None:
            changes |= {name: shared(getattr(self, name)) for name in self.SHARED}
        return replace(self, **changes)  # type: ignore[type-var]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Self:
        """Move every tensor to `device`; floating tensors (not masks or ids) also to `dtype` when given."""

        def move(tensor: Tensor) -> Tensor:
            if dtype is not None and tensor.is_floating_point():
                return tensor.to(device=device, dtype=dtype)
            return tensor.to(device=device)

        return self._map(move, move)

    def cpu(self) -> Self:
        """Detached CPU copies, for shipping through Ray."""
        return self._map(lambda t: t.detach().cpu(), lambda t: t.detach().cpu())

    def select(self, indices: Sequence[int] | Tensor) -> Self:
        """The samples at `indices` (repeats allowed: `select([0] * k)` expands one prompt to k samples)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return self._map(lambda tensor: tensor[index.to(tensor.device)])

    def repeat(self, k: int) -> Self:
        """Each sample k times, sample-major: [a, a, b, b] for [a, b] and k = 2."""
        return self._map(lambda tensor: tensor.repeat_interleave(k, dim=0))


@dataclass(frozen=True)
class FluxConditions(BatchedConditions):
    """FLUX.1 Kontext's conditioning tensors for B samples (see the module docstring for shapes)."""

    prompt_embeds: Tensor
    pooled_prompt_embeds: Tensor
    text_ids: Tensor
    image_latents: Tensor
    image_ids: Tensor
    latent_shape: tuple[int, int, int]

    BATCHED: ClassVar[tuple[str, ...]] = ("prompt_embeds", "pooled_prompt_embeds", "image_latents")
    SHARED: ClassVar[tuple[str, ...]] = ("text_ids", "image_ids")

    @classmethod
    def cat(cls, items: Sequence[FluxConditions]) -> FluxConditions:
        """Join batches (e.g. groups from different prompts); their shared ids and shapes must match."""
        first = items[0]
        for other in items[1:]:
            same = other.latent_shape == first.latent_shape and all(
                torch.equal(getattr(other, name), getattr(first, name)) for name in ("text_ids", "image_ids")
            )
            if not same:
                raise ValueError("conditions with different position ids or latent shapes cannot be joined")
        joined: dict[str, Any] = {name: torch.cat([getattr(item, name) for item in items]) for name in cls.BATCHED}
        return replace(first, **joined)


@runtime_checkable
class Policy(Protocol):
    """An image-editing flow model with a trainable (`default`) and a sampling (`old`) LoRA adapter.

    `adapter=None` anywhere means the frozen base model (adapters disabled).
    """

    family: str

    def encode_conditions(self, prompts: list[str], images: np.ndarray) -> Conditions:
        """Prompts and uint8 (B, H, W, 3) input images -> conditions for B samples (no grad)."""
        ...

    def sample(
        self, conditions: Conditions, seeds: list[int], *, adapter: str | None = SAMPLING, steps: int, guidance: float
    ) -> Tensor:
        """K = len(seeds) clean packed latents (K, N, C), float32, for one prompt's conditions (B = 1)."""
        ...

    def decode(self, latents: Tensor) -> np.ndarray:
        """Packed latents (K, N, C) -> uint8 images (K, H, W, 3)."""
        ...

    def velocity(
        self, latents_t: Tensor, t: Tensor, conditions: Conditions, *, adapter: str | None, guidance: float
    ) -> Tensor:
        """v(x_t, t) as float32 (B, N, C); differentiable only for adapter `default` with grad enabled."""
        ...

    def old_and_reference_velocity(
        self, latents_t: Tensor, t: Tensor, conditions: Conditions, *, guidance: float
    ) -> tuple[Tensor, Tensor]:
        """(v under `old`, v under the frozen base), each float32 (B, N, C), no grad, from ONE batched
        forward (peft's per-sample adapter routing, `LoraAdapters.sampling_and_base`); equal to two
        `velocity` calls up to float rounding."""
        ...

    def timesteps(self, steps: int) -> list[float]:
        """The `steps` times the sampler evaluates, 1.0 first, decreasing, all > 0 (the solver ends at 0)."""
        ...

    def adapter_state(self, name: str) -> dict[str, Tensor]:
        """CPU copies of adapter `name`'s LoRA weights, keyed without the adapter name."""
        ...

    def adapter_parameters(self, name: str) -> dict[str, torch.nn.Parameter]:
        """Adapter `name`'s live weights on the policy's device (no copy), keyed as `adapter_state`."""
        ...

    def load_adapter_state(self, name: str, state: dict[str, Tensor]) -> None: ...

    def copy_adapter(self, src: str, dst: str) -> None: ...

    def blend_adapter(self, dst: str, src: str, decay: float) -> None:
        """dst <- decay * dst + (1 - decay) * src, in place on the device."""
        ...

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The `default` adapter's LoRA parameters: the only ones that require grad."""
        ...


def sample_seed(run_seed: int, epoch: int, prompt_id: str, index: int) -> int:
    """A 63-bit seed for one sample, the same in every process and on every machine (sha256, not hash())."""
    key = f"{run_seed}:{epoch}:{prompt_id}:{index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1

"""Qwen-Image-Edit's conditioning tensors for B samples: plain CPU-shippable tensors, like FluxConditions.

Shapes (packed latents as in `workers.policies.base`):
- `prompt_embeds` (B, L, D): the last hidden states of Qwen2.5-VL for the templated prompt *and*
  the input image (the VL model sees the image), the template's system prompt dropped;
- `prompt_mask` (B, L) int64, 1 for real tokens and 0 for padding: prompts differ in length, so
  joining batches pads them (a single prompt has no padding);
- `image_latents` (B, M, C): the packed, normalised VAE latents of the input image, which follow the
  noisy latents along the token axis (M = N: the condition is encoded at the generated size);
- `latent_shape`: (channels, height, width) of one unpacked generated latent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor

from workers.policies.base import BatchedConditions


@dataclass(frozen=True)
class QwenConditions(BatchedConditions):
    """Qwen-Image-Edit's conditions for B samples (see the module docstring for shapes)."""

    prompt_embeds: Tensor
    prompt_mask: Tensor
    image_latents: Tensor
    latent_shape: tuple[int, int, int]

    BATCHED: ClassVar[tuple[str, ...]] = ("prompt_embeds", "prompt_mask", "image_latents")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompt_mask.shape != self.prompt_embeds.shape[:2]:
            raise ValueError(f"prompt mask {tuple(self.prompt_mask.shape)} does not match the embeddings' (B, L)")

    @classmethod
    def cat(cls, items: Sequence[QwenConditions]) -> QwenConditions:
        """Join batches; shorter prompts are padded (zero embeddings, mask 0) to the longest."""
        first = items[0]
        if any(item.latent_shape != first.latent_shape for item in items[1:]):
            raise ValueError("conditions with different latent shapes cannot be joined")
        length = max(item.prompt_embeds.shape[1] for item in items)

        def pad(tensor: Tensor) -> Tensor:  # (B, L, ...) -> (B, length, ...), zeros after the end
            widths = [0, 0] * (tensor.dim() - 2) + [0, length - tensor.shape[1]]
            return torch.nn.functional.pad(tensor, widths)

        return replace(
            first,
            prompt_embeds=torch.cat([pad(item.prompt_embeds) for item in items]),
            prompt_mask=torch.cat([pad(item.prompt_mask) for item in items]),
            image_latents=torch.cat([item.image_latents for item in items]),
        )

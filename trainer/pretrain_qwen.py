"""Supervised pretraining of the tiny Qwen-Image-Edit stand-in: `trainer.pretrain`'s two stages, Qwen's parts.

1. The causal 3D VAE (`AutoencoderKLQwenImage`, one frame per image) as an autoencoder on every input
   and target image (`trainer.pretrain.fit_vae`), then Qwen's per-channel latent normalisation from
   the data: `latents_mean` / `latents_std` = each latent channel's mean and std.
2. The whole transformer by flow matching (`trainer.pretrain.fit_flow`) on those latents, conditioned
   exactly as rollouts condition it: what `QwenImageEditPolicy.encode_conditions` makes of the prompt
   and the input image (the VL encoder's embeddings of both, then the input's latents appended along
   the token axis). No guidance is drawn: Qwen-Image-Edit has none. The VL text encoder stays frozen
   and random; it still gives each (prompt, image) a distinct embedding.

The checkpoint is saved as a `QwenImageEditPipeline` and loads as either variant (the Plus pipeline
differs in its prompt template and resizing, not in its parts).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trainer.pretrain import ENCODE_CHUNK, Pair, PretrainFamily, _chunks, pretrain_tiny
from workers.policies.qwen_conditions import QwenConditions
from workers.policies.qwen_forward import QwenPipeline, as_pil, edit_velocity, encode_images, vae_pixels
from workers.policies.qwen_image_edit import QwenImageEditPolicy
from workers.policies.tiny_qwen import build_tiny_qwen_image_edit


def qwen_pixels(pipeline: QwenPipeline, images: np.ndarray, size: int) -> Tensor:
    """uint8 (B, H, W, 3) -> (B, 3, 1, size, size) in [-1, 1], resized as the policy resizes them."""
    return vae_pixels(pipeline, as_pil(images), size)


@torch.no_grad()
def normalise_qwen_latents(pipeline: QwenPipeline, pixels: Tensor) -> dict[str, Any]:
    """Set the VAE's per-channel latents_mean / latents_std to those of its latents of `pixels`."""
    vae = pipeline.vae
    latents = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in pixels.split(ENCODE_CHUNK)])
    channels = latents.transpose(0, 1).flatten(1)  # (C, everything else)
    mean, std = channels.mean(dim=1).tolist(), channels.std(dim=1).tolist()
    vae.register_to_config(latents_mean=mean, latents_std=std)
    return {"latents_mean": mean, "latents_std": std}


def condition_encoder(pipeline: QwenPipeline, size: int) -> QwenImageEditPolicy:
    """A policy that encodes conditions with `pipeline`'s VAE and VL encoder, exactly as rollouts do.

    The policy puts LoRA adapters on its transformer, while pretraining trains (and saves) `pipeline`'s
    bare transformer, so the policy gets a copy of the transformer; encoding never runs it.
    """
    parts = {**pipeline.components, "transformer": copy.deepcopy(pipeline.transformer)}
    return QwenImageEditPolicy(type(pipeline)(**parts), device="cpu", dtype=torch.float32, size=size)


@torch.no_grad()
def edit_data(pipeline: QwenPipeline, pairs: list[Pair], size: int) -> tuple[Tensor, QwenConditions]:
    """Target latents x0 and the Qwen conditions (prompt + input image) of every pair."""
    encoder = condition_encoder(pipeline, size)
    conditions = QwenConditions.cat(
        [
            encoder.encode_conditions([p[2] for p in chunk], np.stack([p[0] for p in chunk]))
            for chunk in _chunks(pairs, ENCODE_CHUNK)
        ]
    )
    targets = qwen_pixels(pipeline, np.stack([p[1] for p in pairs]), size)
    return torch.cat([encode_images(pipeline, chunk) for chunk in targets.split(ENCODE_CHUNK)]), conditions


def _velocity(
    pipeline: QwenPipeline, x_t: Tensor, t: Tensor, conditions: QwenConditions, generator: torch.Generator
) -> Tensor:
    return edit_velocity(pipeline, x_t, t, conditions)  # nothing to draw: no guidance


QWEN_IMAGE_EDIT = PretrainFamily(
    name="qwen_image_edit",
    build=build_tiny_qwen_image_edit,
    pixels=qwen_pixels,
    normalise=normalise_qwen_latents,
    edit_data=edit_data,
    velocity=_velocity,
)


def pretrain_tiny_qwen(pairs: Iterable[Pair] | Iterable[Any], out_dir: Path, **settings: Any) -> Path:
    """`trainer.pretrain.pretrain_tiny` for `build_tiny_qwen_image_edit(seed)`; same settings."""
    return pretrain_tiny(pairs, out_dir, family=QWEN_IMAGE_EDIT, **settings)

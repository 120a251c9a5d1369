"""Qwen-Image-Edit's forward pieces without adapters: images in, latents, velocity, pixels out.

The policy (`workers.policies.qwen_image_edit`) runs them with its LoRA adapters active;
`trainer.pretrain_qwen` runs them on the bare base model. Shapes as in `workers.policies.base`
(packed latents (B, N, C)); the causal 3D VAE takes one frame: pixels (B, 3, 1, H, W).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from workers.policies.qwen_conditions import QwenConditions

# A `QwenImageEditPipeline` or `QwenImageEditPlusPipeline` (typed loosely: diffusers attaches the
# parts with setattr, which mypy cannot follow).
QwenPipeline: TypeAlias = Any


def as_pil(images: np.ndarray) -> list[Image.Image]:
    """uint8 (B, H, W, 3) -> B RGB PIL images (what the pipelines' processors take)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 (B, H, W, 3) images, got {images.dtype} {images.shape}")
    return [Image.fromarray(image) for image in images]


def vae_pixels(pipeline: QwenPipeline, images: list[Image.Image], size: int) -> Tensor:
    """PIL images -> float32 (B, 3, 1, size, size) in [-1, 1]: one frame for the causal 3D VAE."""
    return pipeline.image_processor.preprocess(images, height=size, width=size).unsqueeze(2)


def encode_images(pipeline: QwenPipeline, pixels: Tensor) -> Tensor:
    """Pixels (B, 3, 1, H, W) in [-1, 1] -> packed latents (B, N, 4 x latent channels): VAE mode, normalised."""
    latents = pipeline._encode_vae_image(pixels, generator=None)  # (B, C, 1, h, w), per-channel (x - mean) / std
    batch, channels, _, height, width = latents.shape
    return pipeline._pack_latents(latents, batch, channels, height, width)


def decode_latents(pipeline: QwenPipeline, latents: Tensor, size: int) -> Tensor:
    """Packed latents -> pixels in [-1, 1] (B, 3, size, size) (differentiable)."""
    vae = pipeline.vae
    unpacked = pipeline._unpack_latents(latents, size, size, pipeline.vae_scale_factor)  # (B, C, 1, h, w)
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean, device=latents.device, dtype=latents.dtype).view(shape)
    std = torch.tensor(vae.config.latents_std, device=latents.device, dtype=latents.dtype).view(shape)
    return vae.decode(unpacked * std + mean, return_dict=False)[0][:, :, 0]


def edit_velocity(pipeline: QwenPipeline, latents_t: Tensor, t: Tensor, conditions: QwenConditions) -> Tensor:
    """The transformer's velocity for the noisy tokens (B, N, C), in the model's dtype, with the active adapters."""
    batch, tokens, _ = latents_t.shape
    device, dtype = conditions.image_latents.device, conditions.image_latents.dtype
    _, height, width = conditions.latent_shape
    grid = (1, height // 2, width // 2)  # the generated image's RoPE grid, then the condition image's
    mask = conditions.prompt_mask
    output = pipeline.transformer(
        hidden_states=torch.cat([latents_t.to(device, dtype), conditions.image_latents], dim=1),
        timestep=torch.as_tensor(t).to(device, dtype).expand(batch),  # sigma in [0, 1], as the pipeline passes it
        encoder_hidden_states=conditions.prompt_embeds,
        encoder_hidden_states_mask=None if bool(mask.all()) else mask,  # the pipelines' fast path without padding
        img_shapes=[[grid, grid]] * batch,
        return_dict=False,
    )[0]
    return output[:, :tokens]

"""Qwen-Image-Edit as a Policy: diffusers' Qwen edit pipeline parts, two LoRA adapters, our own Heun solver.

As for FLUX.1 Kontext, only the pipeline's pieces are used (its `encode_prompt` with Qwen2.5-VL, the
causal VAE's encode with the per-channel latent normalisation, 2x2 packing, the scheduler's
resolution-dependent sigma shift), never its `__call__`. Qwen-Image-Edit conditions twice: the
VL text encoder reads the prompt together with the input image (so the prompt embeddings depend on
the image), and the packed VAE latents of the input image follow the noisy latents along the token
axis, with one RoPE grid per image (`img_shapes`); the output is sliced back to the noisy tokens.
No classifier-free guidance (the paper samples Qwen-Image-Edit without CFG: `true_cfg_scale` off)
and no guidance embedding, so a guidance value other than 0 is refused.

Sizes are held to the policy's `size` x `size` (the pipelines would resize inputs to about 1 MP):
the VAE sees the input at `size`; the VL encoder sees it at `size` too (`QwenImageEditPipeline`
feeds it the same image), or, for the -2509/-2511 `QwenImageEditPlusPipeline` (`plus`), at its
384 x 384 condition size or `size` if smaller. The module-level functions are the model's forward
pieces without adapters; `trainer.pretrain_qwen` uses them on the bare base model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import QwenImageEditPipeline, QwenImageEditPlusPipeline
from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_shift, retrieve_timesteps
from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import CONDITION_IMAGE_SIZE
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from torch import Tensor

from workers.policies.base import SAMPLING, Conditions, LoraSettings
from workers.policies.lora_policy import LoraPolicy
from workers.policies.qwen_conditions import QwenConditions
from workers.policies.qwen_forward import (
    QwenPipeline,
    as_pil,
    decode_latents,
    edit_velocity,
    encode_images,
    vae_pixels,
)
from workers.policies.solver import seeded_noise

# LoRA targets (docs/method.md 5 names FLUX's). Qwen-Image's MMDiT blocks use diffusers' `Attention`
# with added key/value projections, so FLUX's names map one to one onto Qwen's modules: image-stream
# q/k/v `attn.to_q/to_k/to_v` and output `attn.to_out.0`, text-stream q/k/v
# `attn.add_q_proj/add_k_proj/add_v_proj` and output `attn.to_add_out`. The MLPs and the
# modulation layers (`img_mlp`, `txt_mlp`, `img_mod`, `txt_mod`) stay frozen, as in FLUX.
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
VARIANTS = {"edit": QwenImageEditPipeline, "edit-plus": QwenImageEditPlusPipeline}


def _qwen(conditions: Conditions) -> QwenConditions:
    """The protocol's opaque conditions, as this family made them."""
    if not isinstance(conditions, QwenConditions):
        raise TypeError(f"Qwen-Image-Edit takes QwenConditions, got {type(conditions).__name__}")
    return conditions


def _no_guidance(guidance: float) -> None:
    if guidance:
        raise ValueError(f"Qwen-Image-Edit samples without guidance (no CFG, no guidance embedding), got {guidance}")


class QwenImageEditPolicy(LoraPolicy):
    """Qwen-Image-Edit (or the tiny stand-in from `workers.policies.tiny_qwen`) behind the Policy protocol."""

    family = "qwen-image-edit"

    def __init__(
        self,
        pipeline: QwenPipeline,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        lora: LoraSettings | None = None,
        size: int = 512,
        gradient_checkpointing: bool = False,
        offload_encoders: bool = False,
    ) -> None:
        self.size = size
        # As for FLUX: the velocity never needs the VAE or the VL encoder, so on an accelerator they
        # may wait on the CPU and visit the device only to encode or decode.
        self._place(pipeline, (pipeline.vae, pipeline.text_encoder), device, dtype, offload_encoders)
        self.pipeline = pipeline
        self.plus = isinstance(pipeline, QwenImageEditPlusPipeline)
        factor = pipeline.vae_scale_factor
        if size % (2 * factor):
            raise ValueError(f"size {size} must be a multiple of {2 * factor} (VAE factor x 2x2 packing)")
        self.latent_shape = (int(pipeline.vae.config.z_dim), size // factor, size // factor)
        # The side of the image the VL encoder sees: Plus's condition size (384 for 1:1), never above `size`.
        self.prompt_image_size = min(size, math.isqrt(CONDITION_IMAGE_SIZE)) if self.plus else size
        self._add_adapters(pipeline.transformer, lora, LORA_TARGETS, gradient_checkpointing)
        self._timesteps: dict[int, list[float]] = {}

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        variant: str = "edit",
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> QwenImageEditPolicy:
        """Load a local diffusers directory (Qwen-Image-Edit[-2509/-2511], or a saved tiny pipeline); never the hub.

        `variant` picks the pipeline: "edit" (`QwenImageEditPipeline`) or "edit-plus"
        (`QwenImageEditPlusPipeline`, for -2509 and -2511); the weights are the same kind either way.
        """
        if variant not in VARIANTS:
            raise ValueError(f"no Qwen-Image-Edit variant {variant!r}; one of {sorted(VARIANTS)}")
        pipeline = VARIANTS[variant].from_pretrained(str(path), local_files_only=True, dtype=dtype)
        return cls(pipeline, device=device, dtype=dtype, **kwargs)

    # -- conditions and images ------------------------------------------------------------------

    @torch.no_grad()
    def encode_conditions(self, prompts: list[str], images: np.ndarray) -> QwenConditions:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        pipe, size, side = self.pipeline, self.size, self.prompt_image_size
        encoded = []
        with self._visiting(*self.encoders):
            # One prompt at a time: the Plus pipeline reads a list of images as several images of one
            # prompt, and a sample's embeddings then never depend on which prompts share its batch.
            for prompt, image in zip(prompts, as_pil(images), strict=True):
                seen = pipe.image_processor.resize(image, side, side)  # what the VL encoder looks at
                embeds, _ = pipe.encode_prompt(prompt=[prompt], image=[seen], device=self.device)
                mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device)
                latents = encode_images(pipe, vae_pixels(pipe, [image], size).to(self.device, self.dtype))
                encoded.append(QwenConditions(embeds.to(self.dtype), mask, latents, self.latent_shape))
        return QwenConditions.cat(encoded)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> np.ndarray:
        with self._visiting(self.pipeline.vae):
            pixels = decode_latents(self.pipeline, latents.to(self.device, self.dtype), self.size)
        images = self.pipeline.image_processor.postprocess(pixels.float(), output_type="pt")  # [0, 1]
        return (images * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    # -- the flow -------------------------------------------------------------------------------

    def timesteps(self, steps: int) -> list[float]:
        if steps not in self._timesteps:
            scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.pipeline.scheduler.config)
            config = scheduler.config
            tokens = (self.latent_shape[1] // 2) * (self.latent_shape[2] // 2)  # the generated tokens only
            mu = calculate_shift(
                tokens,
                config.get("base_image_seq_len", 256),
                config.get("max_image_seq_len", 4096),
                config.get("base_shift", 0.5),
                config.get("max_shift", 1.15),
            )
            sigmas = np.linspace(1.0, 1.0 / steps, steps)
            retrieve_timesteps(scheduler, steps, "cpu", sigmas=sigmas.tolist(), mu=mu)
            self._timesteps[steps] = [float(s) for s in scheduler.sigmas[:-1]]  # the scheduler appends 0
        return list(self._timesteps[steps])

    def velocity(
        self, latents_t: Tensor, t: Tensor, conditions: Conditions, *, adapter: str | None, guidance: float = 0.0
    ) -> Tensor:
        _no_guidance(guidance)
        conditions = _qwen(conditions)
        if len(conditions) != latents_t.shape[0]:
            raise ValueError(f"{latents_t.shape[0]} latents but conditions for {len(conditions)} samples")
        conditions = conditions.to(self.device, self.dtype)
        return self._routed(adapter, lambda: edit_velocity(self.pipeline, latents_t, t, conditions))

    def old_and_reference_velocity(
        self, latents_t: Tensor, t: Tensor, conditions: Conditions, *, guidance: float = 0.0
    ) -> tuple[Tensor, Tensor]:
        """(v_old, v_ref), each float32 (B, N, C) and without grad, from one forward of a 2B batch
        (the first copy through `old`, the second through the bare base: `LoraAdapters.sampling_and_base`)."""
        _no_guidance(guidance)
        batch, cond = latents_t.shape[0], _qwen(conditions)
        if len(cond) != batch:
            raise ValueError(f"{batch} latents but conditions for {len(cond)} samples")
        cond = cond.to(self.device, self.dtype)
        doubled = QwenConditions.cat([cond, cond])
        times = torch.as_tensor(t).expand(batch)
        old, reference = self.adapters.sampling_and_base(
            lambda: edit_velocity(self.pipeline, torch.cat([latents_t, latents_t]), torch.cat([times, times]), doubled),
            batch,
        )
        return old.float(), reference.float()

    @torch.no_grad()
    def sample(
        self,
        conditions: Conditions,
        seeds: list[int],
        *,
        adapter: str | None = SAMPLING,
        steps: int,
        guidance: float = 0.0,
    ) -> Tensor:
        _no_guidance(guidance)
        if len(conditions) != 1:
            raise ValueError(f"sample takes one prompt's conditions, got {len(conditions)}")
        count = len(seeds)
        cond = _qwen(conditions).to(self.device, self.dtype).repeat(count)
        channels, height, width = cond.latent_shape
        noise = self.pipeline._pack_latents(seeded_noise(seeds, cond.latent_shape), count, channels, height, width)

        def velocity(x: Tensor, t: float) -> Tensor:
            return self.velocity(x, torch.full((count,), t), cond, adapter=adapter)

        return self._solve(velocity, noise, [*self.timesteps(steps), 0.0], adapter)

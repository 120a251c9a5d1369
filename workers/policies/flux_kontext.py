"""FLUX.1 Kontext as a Policy: diffusers' `FluxKontextPipeline` parts, two LoRA adapters, our own Heun solver.

Only the pipeline's pieces are used (encode_prompt, the VAE encode with FLUX's shift/scale, 2x2
packing, position ids, the scheduler's resolution-dependent sigma shift), never its `__call__`.
Kontext conditions by concatenation: the packed latents of the input image follow the noisy latents
along the token axis, with position ids whose first coordinate is 1 (0 for the noisy tokens); the
transformer's output is sliced back to the noisy tokens. FLUX.1 Kontext dev is guidance-distilled:
the guidance scale goes in through the transformer's guidance embedding (no second CFG pass).
Images are square, `size` x `size` (inputs are resized to it). The module-level functions are the
model's forward pieces without adapters; `trainer.pretrain` uses them on the bare base model.

Memory: the velocity never needs the VAE or the text encoders (conditions arrive as tensors), so with
`offload_encoders` on a CUDA device they live on the CPU and visit the device only inside
`encode_conditions` / `decode`: between those the GPU holds the transformer alone, and the learner
(which never encodes) never holds them. `gradient_checkpointing` recomputes the transformer blocks
in the backward instead of keeping their activations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch
from diffusers import FluxKontextPipeline
from diffusers.pipelines.flux.pipeline_flux_kontext import calculate_shift, retrieve_timesteps
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from torch import Tensor

from workers.policies.base import SAMPLING, Conditions, FluxConditions, LoraSettings
from workers.policies.lora_policy import LoraPolicy
from workers.policies.solver import seeded_noise

MAX_T5_TOKENS = 512
# A `FluxKontextPipeline`. diffusers attaches a pipeline's parts (vae, transformer, ...) with setattr, which
# mypy cannot follow, so pipelines are typed loosely here.
KontextPipeline: TypeAlias = Any


def pixels_from_uint8(images: np.ndarray, pipeline: KontextPipeline, size: int) -> Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, size, size) in [-1, 1] through the pipeline's image processor."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 (B, H, W, 3) images, got {images.dtype} {images.shape}")
    writable = images if images.flags.writeable else images.copy()  # torch refuses read-only memory
    pixels = torch.from_numpy(writable).permute(0, 3, 1, 2).float().div(255.0)
    return pipeline.image_processor.preprocess(pixels, height=size, width=size)


def encode_images(pipeline: KontextPipeline, pixels: Tensor) -> Tensor:
    """Pixels in [-1, 1] (B, 3, H, W) -> packed latents (B, N, 4 x latent channels): VAE mode, shift, scale."""
    latents = pipeline._encode_vae_image(pixels, generator=None)
    batch, channels, height, width = latents.shape
    return pipeline._pack_latents(latents, batch, channels, height, width)


def decode_latents(pipeline: KontextPipeline, latents: Tensor, size: int) -> Tensor:
    """Packed latents -> pixels in [-1, 1] (B, 3, size, size) (differentiable)."""
    vae = pipeline.vae
    unpacked = pipeline._unpack_latents(latents, size, size, pipeline.vae_scale_factor)
    unpacked = unpacked / vae.config.scaling_factor + vae.config.shift_factor
    return vae.decode(unpacked, return_dict=False)[0]


def kontext_velocity(
    pipeline: KontextPipeline, latents_t: Tensor, t: Tensor, conditions: FluxConditions, guidance: float
) -> Tensor:
    """The transformer's velocity for the noisy tokens (B, N, C), in the model's dtype, with the active adapters."""
    transformer = pipeline.transformer
    batch, tokens, _ = latents_t.shape
    device, dtype = conditions.image_latents.device, conditions.image_latents.dtype
    _, height, width = conditions.latent_shape
    latent_ids = pipeline._prepare_latent_image_ids(batch, height // 2, width // 2, device, dtype)
    embedded_guidance = None
    if transformer.config.guidance_embeds:
        embedded_guidance = torch.full((batch,), float(guidance), device=device, dtype=torch.float32)
    output = transformer(
        hidden_states=torch.cat([latents_t.to(device, dtype), conditions.image_latents], dim=1),
        timestep=torch.as_tensor(t).to(device, dtype).expand(batch),
        guidance=embedded_guidance,
        pooled_projections=conditions.pooled_prompt_embeds,
        encoder_hidden_states=conditions.prompt_embeds,
        txt_ids=conditions.text_ids,
        img_ids=torch.cat([latent_ids, conditions.image_ids], dim=0),
        return_dict=False,
    )[0]
    return output[:, :tokens]


def _flux(conditions: Conditions) -> FluxConditions:
    """The protocol's opaque conditions, as this family made them."""
    if not isinstance(conditions, FluxConditions):
        raise TypeError(f"FLUX.1 Kontext takes FluxConditions, got {type(conditions).__name__}")
    return conditions


# The attention projections LoRA adapts (docs/method.md 5), named as in diffusers' FLUX transformer.
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


class FluxKontextPolicy(LoraPolicy):
    """FLUX.1 Kontext (or the tiny stand-in from `workers.policies.tiny`) behind the Policy protocol."""

    family = "flux-kontext"

    def __init__(
        self,
        pipeline: KontextPipeline,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        lora: LoraSettings | None = None,
        size: int = 512,
        max_sequence_length: int | None = None,
        gradient_checkpointing: bool = False,
        offload_encoders: bool = False,
    ) -> None:
        self.size = size
        self._place(pipeline, (pipeline.vae, pipeline.text_encoder, pipeline.text_encoder_2), device, dtype,
                    offload_encoders)  # fmt: skip
        self.pipeline = pipeline
        factor = pipeline.vae_scale_factor
        if size % (2 * factor):
            raise ValueError(f"size {size} must be a multiple of {2 * factor} (VAE factor x 2x2 packing)")
        self.latent_shape = (int(pipeline.vae.config.latent_channels), size // factor, size // factor)
        # The T5 prompt length: 512 for FLUX, the tokenizer's own cap when smaller (64 for the tiny model).
        self.max_sequence_length = max_sequence_length or min(MAX_T5_TOKENS, pipeline.tokenizer_2.model_max_length)
        self._add_adapters(pipeline.transformer, lora, LORA_TARGETS, gradient_checkpointing)
        self._timesteps: dict[int, list[float]] = {}

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, **kwargs
    ) -> FluxKontextPolicy:
        """Load a local diffusers directory (FLUX.1 Kontext dev, or a saved tiny pipeline); never the hub."""
        pipeline = FluxKontextPipeline.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        return cls(pipeline, device=device, dtype=dtype, **kwargs)

    # -- conditions and images ------------------------------------------------------------------

    @torch.no_grad()
    def encode_conditions(self, prompts: list[str], images: np.ndarray) -> FluxConditions:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        pipe = self.pipeline
        with self._visiting(*self.encoders):
            prompt_embeds, pooled, text_ids = pipe.encode_prompt(
                prompt=list(prompts), device=self.device, max_sequence_length=self.max_sequence_length
            )
            pixels = pixels_from_uint8(images, pipe, self.size).to(self.device, self.dtype)
            image_latents = encode_images(pipe, pixels)
        _, height, width = self.latent_shape
        image_ids = pipe._prepare_latent_image_ids(len(prompts), height // 2, width // 2, self.device, self.dtype)
        image_ids[..., 0] = 1  # Kontext marks the condition tokens with a first id coordinate of 1
        return FluxConditions(
            prompt_embeds=prompt_embeds.to(self.dtype),
            pooled_prompt_embeds=pooled.to(self.dtype),
            text_ids=text_ids.to(self.dtype),
            image_latents=image_latents,
            image_ids=image_ids,
            latent_shape=self.latent_shape,
        )

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
            tokens = (self.latent_shape[1] // 2) * (self.latent_shape[2] // 2)
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
        self, latents_t: Tensor, t: Tensor, conditions: Conditions, *, adapter: str | None, guidance: float
    ) -> Tensor:
        if len(conditions) != latents_t.shape[0]:
            raise ValueError(f"{latents_t.shape[0]} latents but conditions for {len(conditions)} samples")
        conditions = _flux(conditions).to(self.device, self.dtype)
        return self._routed(adapter, lambda: kontext_velocity(self.pipeline, latents_t, t, conditions, guidance))

    def old_and_reference_velocity(
        self, latents_t: Tensor, t: Tensor, conditions: Conditions, *, guidance: float
    ) -> tuple[Tensor, Tensor]:
        """(v_old, v_ref), each float32 (B, N, C) and without grad, from one forward of a 2B batch.

        The B samples go in twice; peft routes the first copy through `old` and the second through the
        bare base (`LoraAdapters.sampling_and_base`), so the base layers run once on 2B rows instead of
        twice on B. Equal to `velocity(adapter="old")` and `velocity(adapter=None)` up to float rounding.
        """
        batch = latents_t.shape[0]
        if len(conditions) != batch:
            raise ValueError(f"{batch} latents but conditions for {len(conditions)} samples")
        cond = _flux(conditions).to(self.device, self.dtype)
        doubled = FluxConditions.cat([cond, cond])
        times = torch.as_tensor(t).expand(batch)
        old, reference = self.adapters.sampling_and_base(
            lambda: kontext_velocity(
                self.pipeline, torch.cat([latents_t, latents_t]), torch.cat([times, times]), doubled, guidance
            ),
            batch,
        )
        return old.float(), reference.float()

    @torch.no_grad()
    def sample(
        self, conditions: Conditions, seeds: list[int], *, adapter: str | None = SAMPLING, steps: int, guidance: float
    ) -> Tensor:
        if len(conditions) != 1:
            raise ValueError(f"sample takes one prompt's conditions, got {len(conditions)}")
        count = len(seeds)
        cond = _flux(conditions).to(self.device, self.dtype).repeat(count)
        channels, height, width = cond.latent_shape
        noise = self.pipeline._pack_latents(seeded_noise(seeds, cond.latent_shape), count, channels, height, width)

        def velocity(x: Tensor, t: float) -> Tensor:
            return self.velocity(x, torch.full((count,), t), cond, adapter=adapter, guidance=guidance)

        return self._solve(velocity, noise, [*self.timesteps(steps), 0.0], adapter)

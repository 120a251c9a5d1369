"""The transformers `make bench-learner` measures, with the inputs of one learner micro-step.

FLUX.1 Kontext [dev] (`FluxTransformer2DModel`, 11.9 B parameters) and Qwen-Image-Edit
(`QwenImageTransformer2DModel`, 20.4 B) at their published configs, or at toy size (`tiny=True`),
with random weights built directly on the device in the given dtype: nothing is downloaded. Both
families see 512x512 images through a factor-8 VAE with 16 latent channels packed 2x2, so one image
is 1024 tokens of 64 channels; the condition image adds another 1024 and the prompt `text_tokens`.

Each `Model` is the project's policy around the transformer (two LoRA adapters, `default` and `old`;
gradient checkpointing; `offload_encoders`), a micro-step's random conditions, and the family's raw
forward (`kontext_velocity`, `edit_velocity`) that the reference recipe calls under whichever adapter
diffusers has switched on. The learner never encodes or decodes, so the pipelines' VAE and text
encoders are toy stand-ins left on the CPU: the policies read their geometry, nothing runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import FluxKontextPipeline, QwenImageEditPipeline
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_kl_qwenimage import AutoencoderKLQwenImage
from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformer2DModel
from torch import Tensor, nn

from workers.policies.base import Conditions, FluxConditions, LoraSettings, Policy
from workers.policies.flux_kontext import FluxKontextPolicy, KontextPipeline, kontext_velocity
from workers.policies.qwen_conditions import QwenConditions
from workers.policies.qwen_forward import edit_velocity
from workers.policies.qwen_image_edit import QwenImageEditPolicy
from workers.policies.tiny import build_tiny_kontext
from workers.policies.tiny_qwen import build_tiny_qwen_image_edit

# black-forest-labs/FLUX.1-Kontext-dev transformer/config.json (the FLUX.1 [dev] transformer's).
FLUX_KONTEXT_DEV: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
# Qwen/Qwen-Image-Edit(-2509) transformer/config.json (the Qwen-Image transformer's).
QWEN_IMAGE_EDIT: dict[str, Any] = {
    "patch_size": 2,
    "in_channels": 64,
    "out_channels": 16,
    "num_layers": 60,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 3584,
    "guidance_embeds": False,
    "axes_dims_rope": (16, 56, 56),
}
# Toy sizes with the same structure (width 64, two blocks of each kind, 4 latent channels).
FLUX_TINY = FLUX_KONTEXT_DEV | {
    "in_channels": 16,
    "num_layers": 2,
    "num_single_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 4,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 32,
    "axes_dims_rope": (4, 6, 6),
}
QWEN_TINY = QWEN_IMAGE_EDIT | {
    "in_channels": 16,
    "out_channels": 4,
    "num_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 4,
    "joint_attention_dim": 32,
    "axes_dims_rope": (4, 6, 6),
}
VAE_FACTOR = 8  # both families' VAEs: 512x512 pixels -> 64x64 latents -> 32x32 = 1024 packed tokens
GUIDANCE = 2.5  # FLUX.1 Kontext's; Qwen-Image-Edit takes none


@dataclass
class Model:
    """One transformer on the device with adapters `default` and `old`, and one micro-step's inputs.

    `latents` is (B, N, C), the shape of x_t; `forward(x_t, t)` -> float32 (B, N, C) is the raw
    diffusers forward under the adapters diffusers has active; `policy` wraps the same transformer.
    """

    name: str
    family: str
    transformer: nn.Module
    conditions: Conditions
    latents: tuple[int, int, int]
    forward: Callable[[Tensor, Tensor], Tensor]
    policy: Policy
    guidance: float

    @property
    def parameters(self) -> int:
        return sum(p.numel() for name, p in self.transformer.named_parameters() if "lora_" not in name)


def build_transformer(cls: type[nn.Module], config: dict[str, Any], device: str, dtype: torch.dtype) -> nn.Module:
    """`cls(**config)` with seeded random weights allocated on `device` in `dtype` (no CPU copy first)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.random.fork_rng(devices=[]), torch.device(device):
            torch.manual_seed(0)
            return cls(**config).eval()
    finally:
        torch.set_default_dtype(previous)


def _standin_vae(latent_channels: int) -> AutoencoderKL:
    """A toy factor-8 VAE with the family's latent channels: the policy reads its geometry, never runs it."""
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=latent_channels,
        norm_num_groups=8,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def flux_kontext(
    *, tiny: bool, device: str, dtype: torch.dtype, size: int, batch: int, text_tokens: int, lora: LoraSettings
) -> Model:
    """FLUX.1 Kontext [dev] (or toy) inside the project's `FluxKontextPolicy`, gradient checkpointing on."""
    config = FLUX_TINY if tiny else FLUX_KONTEXT_DEV
    transformer = build_transformer(FluxTransformer2DModel, config, device, dtype)
    # The tiny pipeline's text encoders and tokenizers; the family's transformer and latent geometry.
    vae = _standin_vae(config["in_channels"] // 4)
    tiny_parts: dict[str, Any] = build_tiny_kontext().components  # type: ignore[attr-defined]
    pipeline: KontextPipeline = FluxKontextPipeline(**{**tiny_parts, "transformer": transformer, "vae": vae})
    policy = FluxKontextPolicy(
        pipeline,
        device=device,
        dtype=dtype,
        lora=lora,
        size=size,
        max_sequence_length=text_tokens,
        gradient_checkpointing=True,
        offload_encoders=True,
    )
    channels, height, width = policy.latent_shape
    tokens = (height // 2) * (width // 2)
    generator = torch.Generator().manual_seed(1)

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator).to(device, dtype)

    image_ids = pipeline._prepare_latent_image_ids(1, height // 2, width // 2, device, dtype)
    image_ids[..., 0] = 1  # Kontext's marker for the condition tokens
    conditions = FluxConditions(
        prompt_embeds=randn(batch, text_tokens, config["joint_attention_dim"]),
        pooled_prompt_embeds=randn(batch, config["pooled_projection_dim"]),
        text_ids=torch.zeros(text_tokens, 3, device=device, dtype=dtype),
        image_latents=randn(batch, tokens, 4 * channels),
        image_ids=image_ids,
        latent_shape=policy.latent_shape,
    )

    def forward(latents_t: Tensor, t: Tensor) -> Tensor:
        return kontext_velocity(pipeline, latents_t, t, conditions, GUIDANCE).float()

    name = "FLUX.1 Kontext [dev]" + (" (tiny)" if tiny else "")
    return Model(
        name, "flux_kontext", transformer, conditions, (batch, tokens, 4 * channels), forward, policy, GUIDANCE
    )


def qwen_image_edit(
    *, tiny: bool, device: str, dtype: torch.dtype, size: int, batch: int, text_tokens: int, lora: LoraSettings
) -> Model:
    """Qwen-Image-Edit (or toy) inside the project's `QwenImageEditPolicy`, gradient checkpointing on."""
    config = QWEN_TINY if tiny else QWEN_IMAGE_EDIT
    transformer = build_transformer(QwenImageTransformer2DModel, config, device, dtype)
    latent_channels = config["out_channels"]
    vae = AutoencoderKLQwenImage(  # toy, factor 8 (three downsamplings) like the real one
        base_dim=8,
        z_dim=latent_channels,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * latent_channels,
        latents_std=[1.0] * latent_channels,
    )
    tiny_parts: dict[str, Any] = build_tiny_qwen_image_edit().components  # type: ignore[union-attr]
    pipeline = QwenImageEditPipeline(**{**tiny_parts, "transformer": transformer, "vae": vae})  # its VL parts
    policy = QwenImageEditPolicy(
        pipeline, device=device, dtype=dtype, lora=lora, size=size, gradient_checkpointing=True, offload_encoders=True
    )
    channels, height, width = policy.latent_shape
    tokens = (height // 2) * (width // 2)
    generator = torch.Generator().manual_seed(1)
    conditions = QwenConditions(
        prompt_embeds=torch.randn(batch, text_tokens, config["joint_attention_dim"], generator=generator).to(
            device, dtype
        ),
        prompt_mask=torch.ones(batch, text_tokens, dtype=torch.long, device=device),  # one prompt: no padding
        image_latents=torch.randn(batch, tokens, 4 * channels, generator=generator).to(device, dtype),
        latent_shape=policy.latent_shape,
    )

    def forward(latents_t: Tensor, t: Tensor) -> Tensor:
        return edit_velocity(pipeline, latents_t, t, conditions).float()

    name = "Qwen-Image-Edit" + (" (tiny)" if tiny else "")
    return Model(name, "qwen_image_edit", transformer, conditions, (batch, tokens, 4 * channels), forward, policy, 0.0)


ARCHITECTURES: dict[str, Callable[..., Model]] = {"flux_kontext": flux_kontext, "qwen_image_edit": qwen_image_edit}

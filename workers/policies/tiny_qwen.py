"""A tiny Qwen-Image-Edit pipeline built in code: the second family's CPU stand-in (no hub, no weights).

`build_tiny_qwen_image_edit(seed, plus=False)` returns a real `QwenImageEditPipeline` (or, with
`plus`, a `QwenImageEditPlusPipeline`, the -2509/-2511 pipeline) whose parts are small random models:

- `AutoencoderKLQwenImage` (the causal 3D VAE, one frame): 3 resolution levels (factor 4: a 64x64
  image is a 16x16x4 latent, 8x8 = 64 tokens once packed 2x2), base width 8, `latents_mean` 0 /
  `latents_std` 1 per channel until `trainer.pretrain_qwen` fits it and sets them from the data.
- `QwenImageTransformer2DModel`: inner width 64 (4 heads of 16), 2 double-stream blocks, no
  guidance embedding (as Qwen-Image-Edit), in_channels 16 = 4 latent channels x 2x2.
- `Qwen2_5_VLForConditionalGeneration` (text width 32, 2 layers; a 1-block vision tower with 14 px
  patches merged 2x2) with a `Qwen2VLProcessor` whose image processor keeps images within 56x56
  pixels (at most 4 vision tokens). Its `Qwen2Tokenizer` is byte-level BPE whose merges are learnt
  (by `tokenizers`' BPE trainer, deterministic) from the two pipelines' own prompt templates, so the
  system prompt the pipelines drop is exactly `prompt_template_encode_start_idx` (64) tokens, as
  with the real tokenizer; every other text falls back to bytes, so any prompt encodes.
- `FlowMatchEulerDiscreteScheduler` with Qwen-Image's settings (exponential dynamic shift, terminal 0.02).

Everything is seeded (the global RNG is left as it was) and round-trips through `save_pretrained` /
`from_pretrained(local_files_only=True)`; one saved directory loads as either pipeline.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from diffusers import QwenImageEditPipeline, QwenImageEditPlusPipeline
from diffusers.models.autoencoders.autoencoder_kl_qwenimage import AutoencoderKLQwenImage
from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformer2DModel
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from tokenizers import Tokenizer, models, trainers
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from workers.policies.qwen_forward import QwenPipeline
from workers.policies.tiny import byte_level_vocab

TEXT_WIDTH = 32
LATENT_CHANNELS = 4
PATCH_SIZE = 14
MERGE_SIZE = 2
MIN_PIXELS = 28 * 28  # one merged 2x2 block of 14 px patches: 1 vision token
MAX_PIXELS = 56 * 56  # 4 vision tokens per image at most, whatever the policy's size
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen-Image's scheduler settings (its scheduler_config.json).
QWEN_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 0.9,
    "base_image_seq_len": 256,
    "max_image_seq_len": 8192,
    "shift_terminal": 0.02,
    "time_shift_type": "exponential",
}


def prompt_templates() -> list[str]:
    """The prompt templates of both edit pipelines, as diffusers writes them (read from bare pipelines)."""
    parts: dict[str, Any] = dict.fromkeys(("scheduler", "vae", "text_encoder", "tokenizer", "processor", "transformer"))
    bare: list[Any] = [cls(**parts) for cls in (QwenImageEditPipeline, QwenImageEditPlusPipeline)]
    return [str(pipeline.prompt_template_encode) for pipeline in bare]


def build_qwen_tokenizer() -> Qwen2Tokenizer:
    """Byte-level BPE with merges learnt from the pipelines' templates, plus Qwen's special tokens."""
    pre_tokenizer = Qwen2Tokenizer(vocab=byte_level_vocab(), merges=[]).backend_tokenizer.pre_tokenizer
    corpus = []
    for template in prompt_templates():
        for special in SPECIAL_TOKENS:  # specials are added whole; the words around them are learnt
            template = template.replace(special, "\n")
        corpus.append(template.replace("{}", "Picture 1: "))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=4096, show_progress=False, initial_alphabet=list(byte_level_vocab()))
    bpe.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges: Any = [tuple(pair) for pair in model["merges"]]  # `tokenizers` wants pairs (typed list[str])
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tokenizer


def build_qwen_processor(tokenizer: Qwen2Tokenizer) -> Qwen2VLProcessor:
    sizes: dict[str, Any] = {
        "min_pixels": MIN_PIXELS,
        "max_pixels": MAX_PIXELS,
        "patch_size": PATCH_SIZE,
        "merge_size": MERGE_SIZE,
    }
    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**sizes),
        video_processor=Qwen2VLVideoProcessor(**sizes),  # required by the processor, never used
        tokenizer=tokenizer,
    )


def _token_id(tokenizer: Qwen2Tokenizer, token: str) -> int:
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise TypeError(f"{token!r} is not one token")
    return found


def build_qwen_text_encoder(tokenizer: Qwen2Tokenizer) -> Qwen2_5_VLForConditionalGeneration:
    def ids(token: str) -> int:
        return _token_id(tokenizer, token)

    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": TEXT_WIDTH,
            "intermediate_size": 2 * TEXT_WIDTH,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            # head_dim 8 -> 4 rotary frequencies, split over (temporal, height, width) positions.
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
            "bos_token_id": None,
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": TEXT_WIDTH,  # the merger's output width = the text model's
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": 2,
            "window_size": 2 * PATCH_SIZE * MERGE_SIZE,
            "fullatt_block_indexes": [0],
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def build_tiny_qwen_vae() -> AutoencoderKLQwenImage:
    return AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=LATENT_CHANNELS,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * LATENT_CHANNELS,
        latents_std=[1.0] * LATENT_CHANNELS,
    )


def build_tiny_qwen_transformer() -> QwenImageTransformer2DModel:
    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=LATENT_CHANNELS * 4,
        out_channels=LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=TEXT_WIDTH,
        axes_dims_rope=(4, 6, 6),
    )


def build_tiny_qwen_image_edit(seed: int = 0, *, plus: bool = False) -> QwenPipeline:
    """A tiny random Qwen-Image-Edit pipeline (float32, CPU), the same weights for the same `seed`;
    `plus` puts the same parts into a `QwenImageEditPlusPipeline` (the -2509/-2511 pipeline)."""
    tokenizer = build_qwen_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = build_tiny_qwen_vae()
        transformer = build_tiny_qwen_transformer()
        text_encoder = build_qwen_text_encoder(tokenizer)
    pipeline_class = QwenImageEditPlusPipeline if plus else QwenImageEditPipeline
    return pipeline_class(
        scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_SCHEDULER),
        vae=vae.eval(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=build_qwen_processor(tokenizer),
        transformer=transformer.eval(),
    )


def parameter_counts(pipeline: QwenPipeline) -> dict[str, int]:
    """Parameters per model component (for reports and the size budget)."""
    names = ("transformer", "vae", "text_encoder")
    return {name: sum(p.numel() for p in getattr(pipeline, name).parameters()) for name in names}

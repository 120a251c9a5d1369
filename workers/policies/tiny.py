"""A tiny FLUX.1 Kontext pipeline built in code: the embedded CPU default's policy (no hub, no weights).

`build_tiny_kontext(seed)` returns a real `FluxKontextPipeline` whose parts are small random models:

- `AutoencoderKL`: 3 resolution levels (factor 4: a 64x64 image is a 16x16x4 latent, 8x8 = 64 tokens
  once packed 2x2), no quant convs (like FLUX's VAE), `shift_factor` 0 / `scaling_factor` 1 until
  `trainer.pretrain` fits it and sets them from the data.
- `FluxTransformer2DModel`: inner width 64 (4 heads of 16), 2 double-stream + 2 single-stream
  blocks, guidance embedding on (like FLUX.1 Kontext dev), in_channels 16 = 4 latent channels x 2x2.
- `CLIPTextModel` (width 32, 1 layer) with a byte-level `CLIPTokenizer` (the GPT-2 byte table, no
  merges: one token per byte, each also in its word-final `</w>` form) and `T5EncoderModel` (width 32,
  1 layer) with a character-level Unigram `T5Tokenizer` capped at 64 tokens (the policy reads that cap
  as its max sequence length).
- `FlowMatchEulerDiscreteScheduler` with FLUX's shift settings.

Everything is seeded (the global RNG is left as it was) and round-trips through
`save_pretrained` / `FluxKontextPipeline.from_pretrained(local_files_only=True)`.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

import torch
from diffusers import FluxKontextPipeline
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

TEXT_WIDTH = 32
T5_MAX_LENGTH = 64
CLIP_MAX_LENGTH = 77
LATENT_CHANNELS = 4

# FLUX.1's scheduler settings (resolution-dependent shift of the sigma schedule).
FLUX_SCHEDULER = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}


def byte_level_vocab(missing: Iterable[str] = ()) -> dict[str, int]:
    """The GPT-2 byte-to-unicode table as a vocabulary: one token per byte, ids 0..255 in byte order.

    Characters in `missing` are left out (tests build a tokenizer that cannot spell some answer).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:  # bytes without a printable glyph map past 255, in order (GPT-2's convention)
            table[byte] = chr(256 + extra)
            extra += 1
    dropped = set(missing)
    symbols = [symbol for _, symbol in sorted(table.items()) if symbol not in dropped]
    return {symbol: i for i, symbol in enumerate(symbols)}


def build_clip_tokenizer() -> CLIPTokenizer:
    """CLIP's BPE marks a word's last symbol with `</w>`: without merges, every byte needs both forms."""
    vocab = byte_level_vocab()
    for symbol in list(vocab):
        vocab[symbol + "</w>"] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tokenizer.model_max_length = CLIP_MAX_LENGTH
    return tokenizer


def build_t5_tokenizer() -> T5Tokenizer:
    """Character-level Unigram: every character is a piece, with and without the word-start marker."""
    chars = sorted(set(string.ascii_letters + string.digits + string.punctuation))
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in chars] + [("▁" + c, -3.5) for c in chars]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    tokenizer.model_max_length = T5_MAX_LENGTH
    return tokenizer


def build_tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=1.0,
        shift_factor=0.0,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=True,
    )


def build_tiny_transformer() -> FluxTransformer2DModel:
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=LATENT_CHANNELS * 4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=TEXT_WIDTH,
        pooled_projection_dim=TEXT_WIDTH,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )


def build_text_encoders(
    clip_tokenizer: CLIPTokenizer, t5_tokenizer: T5Tokenizer
) -> tuple[CLIPTextModel, T5EncoderModel]:
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tokenizer),
            hidden_size=TEXT_WIDTH,
            intermediate_size=2 * TEXT_WIDTH,
            projection_dim=TEXT_WIDTH,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=CLIP_MAX_LENGTH,
            bos_token_id=clip_tokenizer.bos_token_id,
            eos_token_id=clip_tokenizer.eos_token_id,
            pad_token_id=clip_tokenizer.pad_token_id,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=TEXT_WIDTH,
            d_kv=16,
            d_ff=2 * TEXT_WIDTH,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            pad_token_id=t5_tokenizer.pad_token_id,
            eos_token_id=t5_tokenizer.eos_token_id,
        )
    )
    return clip.eval(), t5.eval()


def build_tiny_kontext(seed: int = 0) -> FluxKontextPipeline:
    """A tiny random `FluxKontextPipeline` (float32, CPU), the same weights for the same `seed`."""
    clip_tokenizer, t5_tokenizer = build_clip_tokenizer(), build_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = build_tiny_vae()
        transformer = build_tiny_transformer()
        text_encoder, text_encoder_2 = build_text_encoders(clip_tokenizer, t5_tokenizer)
    return FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER),
        vae=vae.eval(),
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer,
        transformer=transformer.eval(),
    )


def parameter_counts(pipeline: FluxKontextPipeline) -> dict[str, int]:
    """Parameters per model component (for reports and the size budget)."""
    names = ("transformer", "vae", "text_encoder", "text_encoder_2")
    return {name: sum(p.numel() for p in getattr(pipeline, name).parameters()) for name in names}

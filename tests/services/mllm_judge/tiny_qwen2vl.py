"""A tiny, randomly initialised Qwen2-VL judge checkpoint, built in code (no hub, no files to ship).

`build_tiny_qwen2vl(directory)` writes a directory that `AutoProcessor` / `AutoModelForImageTextToText`
load like a real Qwen2-VL checkpoint: config + safetensors weights (about 0.1 M parameters), a
`Qwen2VLProcessor` whose tokenizer has a byte-level vocabulary (the GPT-2 byte-to-unicode table, so
every byte - and so every digit and letter - is one token) plus the merges that make the judge's word
answers ("Yes", "No", as in a real Qwen vocabulary) one token each, plus the Qwen special tokens,
and a small chat template in the Qwen format. The image processor resizes to at most 56x56 pixels
with 14-pixel patches merged 2x2, so any image becomes at most 4 vision tokens and a forward on a
few images takes milliseconds on a CPU. Building is seeded: the same call gives the same weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from workers.policies.tiny import byte_level_vocab  # one GPT-2 byte table for every tiny tokenizer

# BPE merges, in rank order, that spell the curation answers as single tokens.
WORD_MERGES: tuple[tuple[str, str], ...] = (("Y", "e"), ("Ye", "s"), ("N", "o"))

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The Qwen chat format, reduced to what the judge sends: user/assistant turns whose content is a
# string or a list of {"type": "image"} / {"type": "text"} parts, and the generation prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PATCH_SIZE = 14
MERGE_SIZE = 2
MIN_PIXELS = 28 * 28  # one merged 2x2 block of 14-px patches: 1 vision token
MAX_PIXELS = 56 * 56  # 4x4 patches: 4 vision tokens per image at most


def build_tiny_qwen2vl(directory: Path, *, seed: int = 0, missing_tokens: Iterable[str] = ()) -> Path:
    """Write a tiny Qwen2-VL checkpoint with its processor into `directory`; return `directory`.

    `missing_tokens`: single characters left out of the vocabulary (the tokenizer then cannot
    produce them as one token), for testing a judge's choice-token lookup.
    """
    from transformers import (
        Qwen2Tokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = byte_level_vocab(missing_tokens)
    for left, right in WORD_MERGES:
        vocab.setdefault(left + right, len(vocab))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=list(WORD_MERGES))
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    ids = tokenizer.convert_tokens_to_ids
    sizes = {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "patch_size": PATCH_SIZE, "merge_size": MERGE_SIZE}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**sizes),
        # Qwen2VLProcessor insists on a video processor even though the judge never sends video.
        video_processor=Qwen2VLVideoProcessor(**sizes),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
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
            "depth": 2,
            "embed_dim": 16,
            "hidden_size": 32,  # the merger's output width = the text model's hidden size
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory

"""The two model calls of the `transformers` judge, made on its worker thread over a padded batch.

- `choice_distributions`: one forward; per row, the softmax over its choice tokens' logits at the
  generation position (index -1: the processor pads on the LEFT, so that is every row's last token).
- `greedy_texts`: greedy `generate` of at most `max_new_tokens` tokens; per row, only the new tokens
  decoded (special tokens dropped), stripped. An empty answer is a JudgeFailure, never "".

Both take `Prepared` questions (chat messages, PIL images, choice token ids) and return one result
or Exception per row, in order; an exception of the whole call propagates (the caller retries rows
alone). Shapes: the model returns logits (B, 1, vocab) with `logits_to_keep=1`; `generate` returns
token ids (B, prompt + new).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from motionnft.judge_scores import distribution_from_logits
from services.mllm_judge.backends.base import JudgeFailure


@dataclass(frozen=True)
class Prepared:
    """One validated question, ready for the processor: chat messages, PIL images, choice token ids."""

    messages: list[dict[str, Any]]
    images: list[Image.Image]
    choice_ids: tuple[int, ...]


def _inputs(processor: Any, model: Any, device: str, ready: Sequence[Prepared]) -> Any:
    texts = [processor.apply_chat_template(p.messages, tokenize=False, add_generation_prompt=True) for p in ready]
    # A flat list: the processor fills the image slots of all texts in order.
    images = [image for p in ready for image in p.images]
    inputs = processor(text=texts, images=images or None, return_tensors="pt", padding=True)
    return inputs.to(device=device, dtype=model.dtype)  # casts only float tensors


def choice_distributions(
    processor: Any, model: Any, device: str, ready: Sequence[Prepared]
) -> list[list[float] | Exception]:
    """One padded forward over `ready`; per row, softmax over its choice logits at position -1."""
    import torch

    inputs = _inputs(processor, model, device, ready)
    with torch.inference_mode():
        # use_cache=False: no KV cache, and Qwen2-VL then recomputes its M-RoPE positions per call.
        output = model(**inputs, use_cache=False, logits_to_keep=1)
    last = output.logits[:, -1, :].float().cpu()  # (B, vocab)
    results: list[list[float] | Exception] = []
    for row, p in zip(last, ready, strict=True):
        try:
            results.append(distribution_from_logits(row[list(p.choice_ids)].tolist()))
        except ValueError as exc:  # non-finite logits: no probability to report
            results.append(JudgeFailure(f"choice logits unusable: {exc}"))
    return results


def greedy_texts(
    processor: Any, model: Any, device: str, ready: Sequence[Prepared], max_new_tokens: int
) -> list[str | Exception]:
    """Greedy generation over `ready` (left-padded); per row, its new tokens decoded and stripped."""
    import torch

    inputs = _inputs(processor, model, device, ready)
    tokenizer = processor.tokenizer
    with torch.inference_mode():
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    new = output[:, inputs["input_ids"].shape[1] :].cpu()  # (B, <= max_new_tokens)
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [text.strip() or JudgeFailure("the model's text answer is empty") for text in texts]

"""Shared pieces of the Qwen-Image-Edit tests: a tiny random policy (CPU, float32), either variant."""

from __future__ import annotations

from tests.workers.tiny_policy import SIZE, VISIBLE_LORA
from workers.policies.base import LoraSettings
from workers.policies.qwen_image_edit import QwenImageEditPolicy
from workers.policies.tiny_qwen import build_tiny_qwen_image_edit


def tiny_qwen_policy(lora: LoraSettings = VISIBLE_LORA, *, plus: bool = False, size: int = SIZE) -> QwenImageEditPolicy:
    return QwenImageEditPolicy(build_tiny_qwen_image_edit(0, plus=plus), size=size, lora=lora)

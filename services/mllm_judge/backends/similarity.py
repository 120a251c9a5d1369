"""The weight-free stand-in judge: NOT a language model. It reads neither the instruction nor the
rubric; it rates an edit by how close it is to the ground-truth target (SSIM on luminance).

It exists so the 50:50 reward runs end to end on a laptop with no judge model. It says so in its
name (`similarity`), its model string, /readyz and every response (`is_language_model: false`).

- rating: raw = 5 * clamp(SSIM(edit, target), 0, 1); the levels are the two-point distribution on
  floor(raw) and ceil(raw) whose mean is raw, so `raw` and `levels` agree as for a real judge.
- compare: P(a better) = sigmoid((SSIM(a, target) - SSIM(b, target)) / COMPARE_TEMPERATURE).
A question without a target image fails (there is nothing to compare with), never scores 0. So
does every curation question (yes/no, category, describe): judging those takes a language model.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from motionnft.resizing import fit_size, resize_area
from services.mllm_judge.backends.base import Answer, JudgeFailure, JudgeQuestion, TextAnswer

COMPARE_TEMPERATURE = 0.02  # an SSIM gap of 0.02 is odds of e : 1
# SSIM runs in float64 with ~10 temporaries: at 4096^2 one call took 1.3 GB. Structure at 512 px on
# the long side says as much about an edit as at full size.
MAX_SIDE = 512
MODEL = "ssim-luminance (not a language model)"
NOT_A_LANGUAGE_MODEL = "the similarity backend is not a language model and cannot judge curation criteria"


def luminance(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float64 (H, W) luma in [0, 1] (ITU-R BT.601 weights)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0


def similarity(edit: np.ndarray, target: np.ndarray) -> float:
    """SSIM of the two luminances, in [-1, 1], at the edit's size shrunk to fit MAX_SIDE (area)."""
    size = fit_size(edit.shape[0], edit.shape[1], MAX_SIDE)
    edit, target = resize_area(edit, size), resize_area(target, size)
    return float(structural_similarity(luminance(edit), luminance(target), data_range=1.0))


def rating_levels(ssim: float, top: int = 5) -> list[float]:
    """The two-point distribution over 0..top whose mean is top * clamp(ssim, 0, 1)."""
    raw = top * min(max(ssim, 0.0), 1.0)
    low = min(math.floor(raw), top - 1)
    high_weight = raw - low
    levels = [0.0] * (top + 1)
    levels[low] = 1.0 - high_weight
    levels[low + 1] = high_weight
    return levels


class SimilarityJudge:
    """`JudgeBackend` that compares edits with the target image instead of asking a model."""

    name = "similarity"
    model = MODEL
    is_language_model = False

    async def load(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def answer(self, questions: Sequence[JudgeQuestion]) -> list[Answer]:
        return await asyncio.to_thread(lambda: [self._answer_one(q) for q in questions])

    async def describe(self, questions: Sequence[JudgeQuestion], max_tokens: int) -> list[TextAnswer]:
        return [JudgeFailure(NOT_A_LANGUAGE_MODEL) for _ in questions]

    def _answer_one(self, question: JudgeQuestion) -> Answer:
        if question.kind not in ("rating", "compare"):
            return JudgeFailure(NOT_A_LANGUAGE_MODEL)
        if question.target is None:
            return JudgeFailure("the similarity backend needs the target image; send `target`")
        if question.kind == "rating":
            return rating_levels(similarity(question.images[1], question.target), len(question.choices) - 1)
        ssim_a = similarity(question.images[1], question.target)
        ssim_b = similarity(question.images[2], question.target)
        p_first = 1.0 / (1.0 + math.exp(-(ssim_a - ssim_b) / COMPARE_TEMPERATURE))
        return [p_first, 1.0 - p_first]

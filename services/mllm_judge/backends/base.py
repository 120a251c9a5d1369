"""What every judge backend implements: answer questions with a distribution over their choices,
and describe in free text.

A question is a rendered rubric prompt plus the images it names, in order ((original, edited) for a
rating, (original, A, B) for a comparison, (first frame, last frame) for curation), and the answer
tokens it admits. `answer` returns, per question, the probabilities of those choices (same order,
summing to 1) or a JudgeFailure; `describe` returns, per "describe" question, the model's short text
answer or a JudgeFailure. A failure is never turned into a number (or a text): the scorer reports it
as an error for that item.

Images are uint8 RGB (H, W, 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

QuestionKind = Literal["rating", "compare", "yesno", "category", "describe"]


@dataclass(frozen=True, eq=False)
class JudgeQuestion:
    """One question to the judge.

    Attributes:
        kind: "rating" (choices "0".."5"), "compare" ("A", "B"), "yesno" ("Yes", "No"), "category"
            ("1".."6"), or "describe" (free text, no choices; asked through `describe`).
        rubric: rubric name, e.g. "edit"; `rubric_version` its version string.
        prompt: the full text of the user turn (the rubric with the instruction filled in).
        images: uint8 (H, W, 3) images in the order the prompt names them.
        choices: the answer tokens whose probabilities make the score.
        target: the ground-truth target image, if the caller sent one. Language models never see it;
            the weight-free `similarity` backend needs it.
    """

    kind: QuestionKind
    rubric: str
    rubric_version: str
    prompt: str
    images: tuple[np.ndarray, ...]
    choices: tuple[str, ...]
    target: np.ndarray | None = None
    digests: tuple[str, ...] = field(default=())  # content hashes of images (+ target), for caching
    # Per image, the client's own bytes as a data URL when they can be forwarded unchanged (else None).
    data_urls: tuple[str | None, ...] = field(default=())


class JudgeFailure(Exception):
    """This question got no usable answer (upstream error, timeout, no choice tokens, ...)."""


Answer = list[float] | JudgeFailure
TextAnswer = str | JudgeFailure


class JudgeBackend(Protocol):
    """A judge: a language model behind some API, or the weight-free similarity stand-in."""

    name: str  # "openai", "transformers" or "similarity"
    model: str  # the model id or path, or a description for non-models
    is_language_model: bool

    async def load(self) -> None:
        """Load weights / open connections; called once at startup, off the request path."""
        ...

    async def answer(self, questions: Sequence[JudgeQuestion]) -> list[Answer]:
        """One Answer per question, in order. Must not raise for a single question's failure."""
        ...

    async def describe(self, questions: Sequence[JudgeQuestion], max_tokens: int) -> list[TextAnswer]:
        """Per question, in order, the model's text answer (stripped, non-empty, at most `max_tokens`
        tokens, greedy) or a JudgeFailure. Must not raise for a single question's failure."""
        ...

    async def close(self) -> None:
        """Release connections, threads and memory."""
        ...

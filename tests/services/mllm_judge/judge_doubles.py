"""What the judge's service tests share: pictures with known quality, request bodies, and backend
doubles (put in place of the scorer's backend before the app starts)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from fastapi import FastAPI

from motionnft.contracts.images import encode_image
from services.mllm_judge.backends.base import Answer, JudgeBackend, JudgeFailure, JudgeQuestion, TextAnswer
from tests.motionnft.flow.known_motion import photograph
from tests.services.contract import judge_app

INSTRUCTION = "Make the man raise his left arm"


class Pictures:
    """A photograph as the target, edits at rising noise (in order of falling quality), and its encodings."""

    def __init__(self) -> None:
        self.target = photograph("astronaut", 96)
        self.source = photograph("astronaut", 96)[:, ::-1].copy()
        field = np.random.default_rng(0).standard_normal(self.target.shape)
        self.edits = [np.clip(self.target + s * field, 0, 255).astype(np.uint8) for s in (0.0, 8.0, 30.0, 90.0)]
        self.b64 = {id(a): encode_image(a) for a in (self.target, self.source, *self.edits)}

    def __getitem__(self, array: np.ndarray) -> str:
        return self.b64[id(array)]


def score_body(pics: Pictures, edits: Sequence[np.ndarray] | None = None, **extra: Any) -> dict[str, Any]:
    edits = pics.edits if edits is None else edits
    group = {"instruction": INSTRUCTION, "source": pics[pics.source], "target": pics[pics.target],
             "edits": [pics[e] for e in edits]}  # fmt: skip
    return {"groups": [group], **extra}


def pair(pics: Pictures, a: np.ndarray, b: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {"instruction": INSTRUCTION, "source": pics[pics.source], "target": pics[pics.target],
            "a": pics[a], "b": pics[b], **extra}  # fmt: skip


class Counting:
    """Wraps a backend and counts what reaches it."""

    def __init__(self, inner: JudgeBackend) -> None:
        self.inner = inner
        self.name, self.model, self.is_language_model = inner.name, inner.model, inner.is_language_model
        self.calls = 0
        self.questions: list[JudgeQuestion] = []

    async def load(self) -> None:
        await self.inner.load()

    async def close(self) -> None:
        await self.inner.close()

    async def answer(self, questions: Sequence[JudgeQuestion]) -> list[Answer]:
        self.calls += 1
        self.questions += questions
        return await self.inner.answer(questions)

    async def describe(self, questions: Sequence[JudgeQuestion], max_tokens: int) -> list[TextAnswer]:
        self.calls += 1
        self.questions += questions
        return await self.inner.describe(questions, max_tokens)


class Scripted:
    """A language-model stand-in: answers each question with `respond(question)` (an Answer), and each
    describe question with `tell(question)` (a failure when not given)."""

    name, model, is_language_model = "scripted", "scripted-test-model", True

    def __init__(
        self,
        respond: Callable[[JudgeQuestion], Answer],
        load_error: Exception | None = None,
        tell: Callable[[JudgeQuestion], TextAnswer] | None = None,
    ) -> None:
        self.respond = respond
        self.load_error = load_error
        self.tell = tell or (lambda q: JudgeFailure("scripted: no text answers"))

    async def load(self) -> None:
        if self.load_error is not None:
            raise self.load_error

    async def close(self) -> None:
        return None

    async def answer(self, questions: Sequence[JudgeQuestion]) -> list[Answer]:
        return [self.respond(q) for q in questions]

    async def describe(self, questions: Sequence[JudgeQuestion], max_tokens: int) -> list[TextAnswer]:
        return [self.tell(q) for q in questions]


def with_backend(backend: Any, **settings: Any) -> FastAPI:
    app = judge_app(**settings)
    app.state.scorer.backend = backend
    return app


def grey(value: int, side: int = 32) -> np.ndarray:
    return np.full((side, side, 3), value, dtype=np.uint8)


def metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[-1])

"""The editing instruction of a mined pair: the judge's motion summary rewritten into one imperative
sentence by an OpenAI-compatible chat model (the writer), or, without one, a template read off the
motion statistics. Which of the two wrote it is recorded with the pair.

The writer's answer is checked before it is used (``check_instruction``): one line, one sentence of
3-30 words ending in a full stop, starting with a capital letter and not with a word that begins a
description ("The", "A", "He", ...) rather than an order. An answer that fails is not used: the
template stands in and the manifest says why.
"""

from __future__ import annotations

import math
import re

from pydantic import BaseModel, Field

from motionnft.contracts.service_client import InvalidResponseError, RetryPolicy, ServiceClient

WRITER_SYSTEM = (
    "You turn a description of how something moves in a video into an image-editing instruction. "
    "Answer with one short imperative sentence that tells an editor to make that motion happen, "
    'e.g. "Make the woman turn her head toward the dog." Name the subject; say nothing else.'
)
MIN_WORDS, MAX_WORDS = 3, 30
_DESCRIPTIVE_STARTS = frozenset(
    [
        "the",
        "a",
        "an",
        "this",
        "that",
        "these",
        "those",
        "it",
        "he",
        "she",
        "they",
        "there",
        "i",
        "we",
        "you",
        "his",
        "her",
        "its",
    ]
)


class InstructionRejected(ValueError):
    """The writer's answer is not a usable instruction; the message says which check failed."""


def check_instruction(text: str) -> str:
    """The instruction, stripped of quotes and spaces, or InstructionRejected naming the failed check."""
    sentence = text.strip().strip("\"'").strip()
    words = sentence.split()
    if "\n" in sentence:
        raise InstructionRejected("more than one line")
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        raise InstructionRejected(f"{len(words)} words; {MIN_WORDS} to {MAX_WORDS} expected")
    if not sentence.endswith("."):
        raise InstructionRejected("does not end with a full stop")
    if re.search(r"[.!?]\s", sentence):
        raise InstructionRejected("more than one sentence")
    if not sentence[0].isupper():
        raise InstructionRejected("does not start with a capital letter")
    if words[0].lower().strip(",") in _DESCRIPTIVE_STARTS:
        raise InstructionRejected(f"starts with {words[0]!r}: a description, not an instruction")
    return sentence


def _direction(dx: float, dy: float) -> str:
    """One of eight compass words for a displacement in image coordinates (y grows downwards)."""
    angle = math.degrees(math.atan2(-dy, dx)) % 360
    names = ["to the right", "up and to the right", "up", "up and to the left",
             "to the left", "down and to the left", "down", "down and to the right"]  # fmt: skip
    return names[int((angle + 22.5) // 45) % 8]


def _place(cx: float, cy: float) -> str:
    column = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    if not column and not row:
        return "in the middle of the picture"
    return f"at the {'-'.join(p for p in (row, column) if p)} of the picture"


def template_instruction(measures: dict[str, float]) -> str:
    """'Move the subject at the left of the picture to the right.' from the subject's travel and start.

    Reads ``moving_dx``, ``moving_dy`` (travel, pixels) and ``moving_cx``, ``moving_cy`` (where it starts).
    """
    where = _place(measures["moving_cx"], measures["moving_cy"])
    return f"Move the subject {where} {_direction(measures['moving_dx'], measures['moving_dy'])}."


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    """The body of an OpenAI-compatible ``POST /chat/completions`` (the fields the writer uses)."""

    model: str
    messages: list[ChatMessage]
    max_tokens: int = 48
    temperature: float = 0.0


class ChatChoice(BaseModel):
    message: ChatMessage


class ChatResponse(BaseModel):
    choices: list[ChatChoice] = Field(min_length=1)


class InstructionWriter(ServiceClient):
    """An OpenAI-compatible chat endpoint (``base_url`` like ``http://vllm:8000/v1``) that writes instructions.

    Retries and deadlines are the project's client rules (429/503 and transport errors retried).
    """

    def __init__(self, base_url: str, model: str, *, token: str | None = None, timeout_s: float = 30.0) -> None:
        super().__init__(base_url, token=token, timeout_s=timeout_s, deadline_s=4 * timeout_s,
                         retry=RetryPolicy(max_attempts=3))  # fmt: skip
        self.model = model

    async def write(self, summary: str) -> str:
        """The writer's raw answer to ``summary`` (check it with ``check_instruction``).

        Raises:
            ServiceError: the endpoint failed (after retries) or answered something that is not a completion.
        """
        request = ChatRequest(
            model=self.model,
            messages=[ChatMessage(role="system", content=WRITER_SYSTEM), ChatMessage(role="user", content=summary)],
        )
        response = await self._post("/chat/completions", request, ChatResponse)
        content = response.choices[0].message.content
        if not content.strip():
            raise InvalidResponseError(200, None, "the writer answered an empty message")
        return content

"""What the fake chat-completions upstream (`benchmarks/fake_upstream.py`) can answer: a `Behaviour`
per request, its helpers (a logprobs answer, a text answer, errors, malformed and slow answers), and
the OpenAI chat.completion bodies they become.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from motionnft.judge_scores import RATING_CHOICES

DEFAULT_MODEL = "fake/judge-vl"


@dataclass(frozen=True)
class Behaviour:
    """What the upstream does with one chat-completions request.

    Attributes:
        status: HTTP status of the answer.
        logprobs: token -> logprob of the first generated token, for a 200 answer; None means the
            upstream's default answer. The sampled token is the most likely one.
        body: exact bytes to send instead of a generated body (malformed JSON, missing fields).
        headers: extra response headers (e.g. Retry-After).
        delay_s: seconds spent before answering, on top of the upstream's latency (timeouts).
        text: for a 200 answer, the message content (a text answer); `logprobs`, when also given,
            are its first token's, else the answer's logprobs are null.
    """

    status: int = 200
    logprobs: Mapping[str, float] | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    text: str | None = None


def answer(logprobs: Mapping[str, float]) -> Behaviour:
    """A 200 completion whose first token has these top logprobs."""
    return Behaviour(logprobs=dict(logprobs))


def text_answer(content: str) -> Behaviour:
    """A 200 completion whose `message.content` is `content` (logprobs null)."""
    return Behaviour(text=content)


def error(status: int, retry_after: str | None = None, message: str | None = None) -> Behaviour:
    """An OpenAI-style error answer, optionally with a Retry-After header."""
    text = message or f"fake upstream error {status}"
    body = json.dumps({"error": {"message": text, "type": "fake_error", "code": status}}).encode()
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Behaviour(status=status, body=body, headers=headers)


def malformed_json() -> Behaviour:
    """A 200 whose body is not JSON (cut off mid-object)."""
    return Behaviour(body=b'{"id": "chatcmpl-fake", "choices": [{"index": 0, "logpro')


def without_logprobs() -> Behaviour:
    """A well-formed 200 completion with `logprobs: null` (a server that ignored the request for them)."""
    body = json.loads(completion_body({"4": -0.1}))
    body["choices"][0]["logprobs"] = None
    return Behaviour(body=json.dumps(body).encode())


def no_choice_tokens() -> Behaviour:
    """A 200 completion whose top tokens hold no digit (the model started a sentence instead)."""
    return answer({"The": -0.2, "I": -1.9, "Score": -3.0})


def slow(delay_s: float) -> Behaviour:
    """The default answer, `delay_s` seconds late."""
    return Behaviour(delay_s=delay_s)


def logprobs_from_levels(
    levels: Sequence[float], tokens: Sequence[str] = RATING_CHOICES, extra: Mapping[str, float] | None = None
) -> dict[str, float]:
    """token -> log(p) for each level with p > 0 (tokens "0".."5" by default), plus `extra` tokens."""
    if len(levels) != len(tokens):
        raise ValueError(f"{len(levels)} levels for {len(tokens)} tokens")
    logprobs = {token: math.log(p) for token, p in zip(tokens, levels, strict=True) if p > 0}
    logprobs.update(extra or {})
    return logprobs


def completion_body(logprobs: Mapping[str, float], model: str = DEFAULT_MODEL) -> bytes:
    """An OpenAI chat.completion body: one generated token (the most likely) with its top_logprobs."""
    ranked = sorted(logprobs.items(), key=lambda item: item[1], reverse=True)
    token, logprob = ranked[0] if ranked else ("", 0.0)
    top = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked]
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": token},
                "logprobs": {
                    "content": [
                        {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": top}
                    ]
                },
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return json.dumps(body).encode()


def text_body(content: str, logprobs: Mapping[str, float] | None = None, model: str = DEFAULT_MODEL) -> bytes:
    """An OpenAI chat.completion body whose message content is `content`; with `logprobs`, those of its
    first token (as `completion_body` gives them), else `logprobs: null`."""
    body = json.loads(completion_body(logprobs or {}, model))
    choice = body["choices"][0]
    choice["message"]["content"] = content
    choice["finish_reason"] = "stop"
    if not logprobs:
        choice["logprobs"] = None
    return json.dumps(body).encode()

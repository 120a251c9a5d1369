"""The wire format of the `openai` judge backend: the chat-completions request it sends and the
reading of the upstream's answers (bounded in size, parsed defensively, errors named).

Nothing here sends a request on its own or retries: `read_reply` sends the one it is given, and the
retry loop is in `openai_retry.py`. Every malformed answer becomes a JudgeFailure naming its cause.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pydantic_core

from services.mllm_judge.backends.base import JudgeFailure

# Enough of an upstream's text to recognise it in a failure message, and no more.
_SNIPPET_CHARS = 200


def chat_payload(model: str, prompt: str, image_urls: Sequence[str], top_logprobs: int) -> dict[str, Any]:
    """The chat-completions body of one question: one user turn, its images in order, then its prompt.

    One token at temperature 0, with the `top_logprobs` most likely first tokens and their logprobs.
    """
    return {
        **_user_turn(model, prompt, image_urls),
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": top_logprobs,
    }


def text_payload(model: str, prompt: str, image_urls: Sequence[str], max_tokens: int) -> dict[str, Any]:
    """The body of one "describe" question: the same user turn, up to `max_tokens` tokens of greedy
    text (temperature 0), no logprobs."""
    return {**_user_turn(model, prompt, image_urls), "max_tokens": max_tokens, "temperature": 0}


def _user_turn(model: str, prompt: str, image_urls: Sequence[str]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}} for url in image_urls]
    content.append({"type": "text", "text": prompt})
    return {"model": model, "messages": [{"role": "user", "content": content}]}


@dataclass(frozen=True)
class Reply:
    """An upstream answer read in full: status, headers and at most `max_response_bytes` of body."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    reason_phrase: str = ""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


async def read_reply(http: httpx.AsyncClient, request: httpx.Request, max_bytes: int) -> Reply:
    """Send `request` and read its body, decompressed, up to `max_bytes`; a larger one is a JudgeFailure."""
    response = await http.send(request, stream=True)
    try:
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise JudgeFailure(f"upstream answer is larger than {max_bytes} bytes (not retried)")
            chunks.append(chunk)
    finally:
        await response.aclose()
    return Reply(response.status_code, response.headers, b"".join(chunks), response.reason_phrase)


def parse_json(response: Reply) -> Any:
    """The JSON body of `response`; a JudgeFailure quoting its start when it is not JSON."""
    try:
        # pydantic-core bounds nesting depth (a deeply nested body is a ValueError, not a RecursionError).
        return pydantic_core.from_json(response.content)
    except ValueError:
        snippet = response.text[:_SNIPPET_CHARS]
        raise JudgeFailure(
            f"upstream answered HTTP {response.status_code} with a body that is not JSON: {snippet!r}"
        ) from None


def error_text(response: Reply) -> str:
    """The message of an OpenAI ({"error": {"message"}}) or vLLM ({"message"}) error body, or a snippet."""
    try:
        body = pydantic_core.from_json(response.content)
        message = body["error"]["message"] if isinstance(body.get("error"), dict) else body["message"]
        return str(message)[:_SNIPPET_CHARS]
    except (ValueError, KeyError, TypeError, AttributeError):
        return response.text[:_SNIPPET_CHARS].strip() or response.reason_phrase


def first_token_logprobs(body: Any) -> dict[str, float]:
    """token -> logprob of the first generated token: its top_logprobs plus the token itself.

    Two entries with the same text (distinct token ids that decode alike) add their probabilities.
    Raises JudgeFailure when the body lacks `choices[0].logprobs.content[0]` or has wrong types.
    """
    path = "choices[0].logprobs.content[0]"
    try:
        first = body["choices"][0]["logprobs"]["content"][0]
        token, logprob, top = first["token"], first["logprob"], first["top_logprobs"]
    except (KeyError, IndexError, TypeError) as exc:
        raise JudgeFailure(f"upstream answer lacks {path} with token, logprob, top_logprobs ({exc!r})") from None
    if not isinstance(top, list):
        raise JudgeFailure(f"upstream answer's {path}.top_logprobs is not a list")
    logprobs: dict[str, float] = {}
    for entry in top:
        if not isinstance(entry, dict):
            raise JudgeFailure(f"upstream answer's {path}.top_logprobs holds a non-object")
        text, value = _token_logprob(entry.get("token"), entry.get("logprob"), path)
        logprobs[text] = float(np.logaddexp(logprobs[text], value)) if text in logprobs else value
    text, value = _token_logprob(token, logprob, path)
    logprobs.setdefault(text, value)  # the sampled token is normally among the top ones already
    return logprobs


def message_text(body: Any) -> str:
    """The stripped text of `choices[0].message.content`; a JudgeFailure naming what is missing or wrong.

    Content given as a list of parts (some servers do) is joined from its text parts.
    """
    path = "choices[0].message.content"
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise JudgeFailure(f"upstream answer lacks {path} ({exc!r})") from None
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "".join(p for p in parts if isinstance(p, str)) if parts else None
    if not isinstance(content, str):
        raise JudgeFailure(f"upstream answer's {path} is not text: {_snippet(content)}")
    text = content.strip()
    if not text:
        raise JudgeFailure(f"upstream answer's {path} is empty")
    return text


def _token_logprob(token: Any, logprob: Any, path: str) -> tuple[str, float]:
    if not isinstance(token, str) or isinstance(logprob, bool) or not isinstance(logprob, int | float):
        raise JudgeFailure(f"upstream answer's {path} has a token {_snippet(token)} with logprob {_snippet(logprob)}")
    try:
        value = float(logprob)  # a 400-digit integer overflows
    except OverflowError:
        raise JudgeFailure(f"upstream answer's {path} has an out-of-range logprob for {_snippet(token)}") from None
    if math.isnan(value):
        raise JudgeFailure(f"upstream answer's {path} has a NaN logprob for {_snippet(token)}")
    return token, value


def _snippet(value: Any) -> str:
    """A bounded repr of something the upstream sent (a 400-digit integer has no business in a log)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"<an integer of {value.bit_length()} bits>"
    return repr(value)[:_SNIPPET_CHARS]

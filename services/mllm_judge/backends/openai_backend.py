"""The `openai` judge backend: any OpenAI-compatible chat-completions server (vLLM, SGLang, OpenAI).

One `POST {base_url}/chat/completions` per question: a user turn holding the question's images as
base64 PNG data URLs, in order, then its prompt; `max_tokens` 1, `temperature` 0, `logprobs` with
`top_logprobs`. The score is read from the first token's top logprobs, renormalised over the choices
present (docs/method.md 3). A "describe" question (`describe`) is the same turn with `max_tokens` of
greedy text and no logprobs; its answer is `choices[0].message.content`, stripped, never empty.
The target image is never sent, and nothing here fetches a URL.

Upstream load is bounded: a semaphore of `max_concurrency` slots is held exactly while a request is
outstanding (not while encoding images or backing off), so the server never sees more at once.

Retries, per question, at most `max_attempts` tries, within a deadline (`openai_retry.py`): transport
errors, 429 and every 5xx are retried; other 4xx never. The request body and the bounded, defensive
reading of answers are in `openai_wire.py`.
Every failure (error status, timeout, malformed body, no choice tokens) becomes a JudgeFailure that
names its cause; it is never a number.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any, TypeVar

import httpx
import numpy as np
import pydantic_core

from motionnft.contracts.client import RetryPolicy
from motionnft.contracts.images import encode_image
from motionnft.judge_scores import NoChoiceTokens, distribution_from_logprobs
from services.mllm_judge.backends.base import Answer, JudgeFailure, JudgeQuestion, TextAnswer
from services.mllm_judge.backends.openai_retry import complete_with_retries
from services.mllm_judge.backends.openai_wire import (
    Reply,
    chat_payload,
    error_text,
    first_token_logprobs,
    message_text,
    read_reply,
    text_payload,
)

# Reply, read_reply and first_token_logprobs were defined here before the wire format had its own module.
__all__ = ["OpenAIJudge", "Reply", "UpstreamUnavailable", "first_token_logprobs", "read_reply"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
ImageUrls = list[asyncio.Task[str | JudgeFailure]]


class UpstreamUnavailable(RuntimeError):
    """The upstream cannot serve this judge at load: unreachable, erroring, or not serving the model."""


class OpenAIJudge:
    """A judge behind an OpenAI-compatible server; see the module docstring.

    Args:
        base_url: the API root, e.g. `http://vllm:8000/v1`.
        model: the model name on that server.
        api_key: sent as `Authorization: Bearer <api_key>` when set.
        max_concurrency: requests outstanding upstream at once, at most.
        timeout_s: wall-clock limit of one attempt, seconds.
        max_attempts: tries per question (transport errors, 429, 5xx).
        top_logprobs: how many top tokens of the first position to ask for.
        transport: custom httpx transport (tests, proxies); None uses the default pool.
        check_model: at load, require `GET {base_url}/models` to list `model`.
        backoff_base_s, backoff_max_s: full-jitter backoff between tries (RetryPolicy), seconds.
        deadline_s: limit of one question's tries and waits from its first attempt, seconds;
            None means `max_attempts * timeout_s`.
        max_response_bytes: largest upstream answer, bytes after decompression (one answer of
            20 top logprobs is ~5 KB; a gzip bomb is cut off here, not after it filled memory).
    """

    name = "openai"
    is_language_model = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        max_attempts: int = 3,
        top_logprobs: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
        check_model: bool = True,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 5.0,
        deadline_s: float | None = None,
        max_response_bytes: int = 2**20,
    ) -> None:
        if max_concurrency < 1 or timeout_s <= 0 or max_attempts < 1 or top_logprobs < 1:
            raise ValueError("max_concurrency, max_attempts and top_logprobs must be >= 1 and timeout_s > 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.top_logprobs = top_logprobs
        self.check_model = check_model
        self.retry = RetryPolicy(max_attempts, backoff_base_s, backoff_max_s)
        self.deadline_s = deadline_s if deadline_s is not None else max_attempts * timeout_s
        self.max_response_bytes = max_response_bytes
        self._api_key = api_key
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(max_concurrency)  # replaced at load, on the serving event loop

    async def load(self) -> None:
        """Open the connection pool and, with `check_model`, check the upstream serves `model`."""
        if self._http is not None:
            return
        self._slots = asyncio.Semaphore(self.max_concurrency)
        headers = {"User-Agent": "motionnft-judge"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        limits = httpx.Limits(
            max_connections=self.max_concurrency,
            max_keepalive_connections=self.max_concurrency,
            keepalive_expiry=30.0,
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=self.timeout_s,
            limits=limits,
            transport=self._transport,
        )
        if self.check_model:
            try:
                await self._check_model()
            except BaseException:
                await self.close()
                raise

    async def _check_model(self) -> None:
        assert self._http is not None
        url = f"{self.base_url}/models"
        try:
            response = await read_reply(self._http, self._http.build_request("GET", "models"), self.max_response_bytes)
        except (httpx.HTTPError, JudgeFailure) as exc:
            raise UpstreamUnavailable(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise UpstreamUnavailable(f"GET {url} answered HTTP {response.status_code}: {error_text(response)}")
        try:
            served = [entry["id"] for entry in pydantic_core.from_json(response.content)["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamUnavailable(f"GET {url} answered a body that is not a model list") from exc
        if self.model not in served:
            raise UpstreamUnavailable(f"{url} does not serve model {self.model!r}; it serves {served}")

    async def close(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def answer(self, questions: Sequence[JudgeQuestion]) -> list[Answer]:
        """One Answer per question, in order; all asked concurrently within `max_concurrency`."""
        return await self._ask(questions, self._answer_one)

    async def describe(self, questions: Sequence[JudgeQuestion], max_tokens: int) -> list[TextAnswer]:
        """Per question, in order, its text answer (at most `max_tokens` tokens) or a JudgeFailure."""
        return await self._ask(questions, partial(self._describe_one, max_tokens=max_tokens))

    async def _ask(
        self, questions: Sequence[JudgeQuestion], one: Callable[[JudgeQuestion, ImageUrls], Coroutine[Any, Any, T]]
    ) -> list[T]:
        """`one(question, its image URL tasks)` for every question, concurrently; images encoded once."""
        if self._http is None:
            raise RuntimeError("OpenAIJudge.load() must be awaited before answer()")
        encoded: dict[int, asyncio.Task[str | JudgeFailure]] = {}
        async with asyncio.TaskGroup() as group:

            def data_url(image: np.ndarray) -> asyncio.Task[str | JudgeFailure]:
                # Keyed by id(): the questions keep every image alive for the whole call, so an id
                # cannot be reused, and an image shared by several questions is encoded once.
                if id(image) not in encoded:
                    encoded[id(image)] = group.create_task(_encode(image))
                return encoded[id(image)]

            def urls(question: JudgeQuestion) -> ImageUrls:
                # The client's own bytes when the scorer kept them; re-encode only the others.
                given = question.data_urls or (None,) * len(question.images)
                return [
                    _ready(url) if url is not None else data_url(image)
                    for image, url in zip(question.images, given, strict=True)
                ]

            tasks = [group.create_task(one(q, urls(q))) for q in questions]
        return [task.result() for task in tasks]

    async def _answer_one(self, question: JudgeQuestion, images: ImageUrls) -> Answer:
        urls = await _urls(images)
        if isinstance(urls, JudgeFailure):
            return urls
        try:
            payload = chat_payload(self.model, question.prompt, urls, self.top_logprobs)
            attempt = partial(self._attempt, payload)
            body = await complete_with_retries(attempt, self.retry, self.deadline_s, self.timeout_s)
            return distribution_from_logprobs(first_token_logprobs(body), question.choices)
        except JudgeFailure as failure:
            return failure
        except NoChoiceTokens as exc:
            return JudgeFailure(f"upstream answer has no usable choice token: {exc}")
        except ValueError as exc:  # a positive or NaN logprob
            return JudgeFailure(f"upstream answer has invalid logprobs: {exc}")
        except Exception as exc:  # whatever else an upstream answer can provoke is this item's failure
            logger.exception("judge upstream answer could not be read")
            return JudgeFailure(f"upstream answer could not be read: {type(exc).__name__}")

    async def _describe_one(self, question: JudgeQuestion, images: ImageUrls, max_tokens: int) -> TextAnswer:
        urls = await _urls(images)
        if isinstance(urls, JudgeFailure):
            return urls
        try:
            attempt = partial(self._attempt, text_payload(self.model, question.prompt, urls, max_tokens))
            return message_text(await complete_with_retries(attempt, self.retry, self.deadline_s, self.timeout_s))
        except JudgeFailure as failure:
            return failure
        except Exception as exc:  # as in _answer_one: this item's failure, never the request's
            logger.exception("judge upstream text answer could not be read")
            return JudgeFailure(f"upstream answer could not be read: {type(exc).__name__}")

    async def _attempt(self, payload: dict[str, object], deadline: float) -> Reply:
        """One request, holding a slot exactly while it is outstanding, bounded in wall-clock time."""
        assert self._http is not None
        async with self._slots:
            budget_s = min(self.timeout_s, deadline - time.monotonic())
            if budget_s <= 0:
                raise TimeoutError("the question's deadline passed before this attempt")
            # httpx's timeout bounds each socket operation; this bounds the whole attempt.
            async with asyncio.timeout(budget_s):
                request = self._http.build_request("POST", "chat/completions", json=payload, timeout=budget_s)
                return await read_reply(self._http, request, self.max_response_bytes)


async def _urls(images: ImageUrls) -> list[str] | JudgeFailure:
    """The question's data URLs in order, or the first image's failure to encode."""
    urls = []
    for task in images:
        url = await task
        if isinstance(url, JudgeFailure):
            return url
        urls.append(url)
    return urls


def _ready(url: str) -> asyncio.Task[str | JudgeFailure]:
    async def given() -> str | JudgeFailure:
        return url

    return asyncio.get_running_loop().create_task(given())


async def _encode(image: np.ndarray) -> str | JudgeFailure:
    """The image as a base64 PNG data URL, encoded off the event loop (a 256x256 photo takes ~20 ms)."""
    try:
        return "data:image/png;base64," + await asyncio.to_thread(encode_image, image)
    except ValueError as exc:
        return JudgeFailure(f"an image of the question cannot be encoded: {exc}")

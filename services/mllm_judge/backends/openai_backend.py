"""The `openai` judge backend: any OpenAI-compatible chat-completions server (vLLM, SGLang, OpenAI).

One `POST {base_url}/chat/completions` per question: a user turn holding the question's images as
base64 PNG data URLs, in order, then its prompt; `max_tokens` 1, `temperature` 0, `logprobs` with
`top_logprobs`. The score is read from the first token's top logprobs, renormalised over the choices
present (docs/method.md 3). The target image is never sent, and nothing here fetches a URL.

Upstream load is bounded: a semaphore of `max_concurrency` slots is held exactly while a request is
outstanding (not while encoding images or backing off), so the server never sees more at once.

Retries, per question, at most `max_attempts` tries:
- transport errors (connect, reset, timeouts), 429 and every 5xx are retried; other 4xx never (the
  request is wrong and will stay wrong). Unlike the project's service clients (429/503 only), a 5xx
  is retried here: a vLLM engine restart or a gateway in front of it answers 500/502/504 for a moment,
  and a question is cheap to ask again.
- waits use `RetryPolicy` full jitter; a `Retry-After` header replaces the wait, uncapped, but no wait
  that would end past the question's deadline (`deadline_s`, from its first attempt) is started.
- each attempt gets `min(timeout_s, time left to the deadline)` seconds of wall-clock time.
Every failure (error status, timeout, malformed body, no choice tokens) becomes a JudgeFailure that
names its cause; it is never a number.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pydantic_core

from motionnft.contracts.client import RetryPolicy, retry_after_s
from motionnft.contracts.images import encode_image
from motionnft.judge_scores import NoChoiceTokens, distribution_from_logprobs
from services.mllm_judge.backends.base import Answer, JudgeFailure, JudgeQuestion

logger = logging.getLogger(__name__)

_SNIPPET_CHARS = 200


class UpstreamUnavailable(RuntimeError):
    """The upstream cannot serve this judge at load: unreachable, erroring, or not serving the model."""


def _is_retryable(status: int) -> bool:
    return status == 429 or status >= 500


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
            raise UpstreamUnavailable(f"GET {url} answered HTTP {response.status_code}: {_error_text(response)}")
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

            def urls(question: JudgeQuestion) -> list[asyncio.Task[str | JudgeFailure]]:
                # The client's own bytes when the scorer kept them; re-encode only the others.
                given = question.data_urls or (None,) * len(question.images)
                return [
                    _ready(url) if url is not None else data_url(image)
                    for image, url in zip(question.images, given, strict=True)
                ]

            tasks = [group.create_task(self._answer_one(q, urls(q))) for q in questions]
        return [task.result() for task in tasks]

    async def _answer_one(self, question: JudgeQuestion, images: list[asyncio.Task[str | JudgeFailure]]) -> Answer:
        urls = []
        for task in images:
            url = await task
            if isinstance(url, JudgeFailure):
                return url
            urls.append(url)
        try:
            body = await self._complete(self._payload(question, urls))
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

    def _payload(self, question: JudgeQuestion, urls: list[str]) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
        content.append({"type": "text", "text": question.prompt})
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }

    async def _complete(self, payload: dict[str, Any]) -> Any:
        """POST the payload with retries; the parsed JSON of a 2xx answer, or JudgeFailure."""
        deadline = time.monotonic() + self.deadline_s
        attempt = 0
        while True:
            attempt += 1
            wait_s: float | None = None
            try:
                response = await self._attempt(payload, deadline)
            except (httpx.TransportError, TimeoutError) as exc:
                cause = _transport_text(exc, self.timeout_s)
            except httpx.HTTPError as exc:  # e.g. a body that fails to decompress: not transient
                raise JudgeFailure(f"upstream answer unreadable: {type(exc).__name__}: {exc}") from None
            else:
                if response.is_success:
                    return _parse_json(response)
                cause = f"upstream answered HTTP {response.status_code}: {_error_text(response)}"
                if not _is_retryable(response.status_code):
                    raise JudgeFailure(f"{cause} (not retried)")
                wait_s = retry_after_s(response.headers.get("Retry-After"))
            if attempt >= self.retry.max_attempts:
                raise JudgeFailure(f"{cause} (gave up after {attempt} attempts)")
            if wait_s is None:
                wait_s = self.retry.backoff_s(attempt - 1)
            if time.monotonic() + wait_s >= deadline:
                raise JudgeFailure(
                    f"{cause} (gave up after {attempt} attempts: a retry in {wait_s:.2f} s "
                    f"would pass the {self.deadline_s:.1f} s deadline)"
                )
            logger.warning(
                "judge upstream attempt %d/%d failed, retrying in %.2f s: %s",
                attempt, self.retry.max_attempts, wait_s, cause,
            )  # fmt: skip
            await asyncio.sleep(wait_s)

    async def _attempt(self, payload: dict[str, Any], deadline: float) -> Reply:
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


def _parse_json(response: Reply) -> Any:
    try:
        # pydantic-core bounds nesting depth (a deeply nested body is a ValueError, not a RecursionError).
        return pydantic_core.from_json(response.content)
    except ValueError:
        snippet = response.text[:_SNIPPET_CHARS]
        raise JudgeFailure(
            f"upstream answered HTTP {response.status_code} with a body that is not JSON: {snippet!r}"
        ) from None


def _error_text(response: Reply) -> str:
    """The message of an OpenAI ({"error": {"message"}}) or vLLM ({"message"}) error body, or a snippet."""
    try:
        body = pydantic_core.from_json(response.content)
        message = body["error"]["message"] if isinstance(body.get("error"), dict) else body["message"]
        return str(message)[:_SNIPPET_CHARS]
    except (ValueError, KeyError, TypeError, AttributeError):
        return response.text[:_SNIPPET_CHARS].strip() or response.reason_phrase


def _transport_text(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"upstream timed out (limit {timeout_s:g} s per attempt)"
    return f"upstream unreachable: {type(exc).__name__}: {exc}"

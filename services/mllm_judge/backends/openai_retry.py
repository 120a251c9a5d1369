"""The retry loop of the `openai` judge backend: which upstream failures are retried, and how patiently.

Per question, at most `max_attempts` tries:
- transport errors (connect, reset, timeouts), 429 and every 5xx are retried; other 4xx never (the
  request is wrong and will stay wrong). Unlike the project's service clients (429/503 only), a 5xx
  is retried here: a vLLM engine restart or a gateway in front of it answers 500/502/504 for a moment,
  and a question is cheap to ask again.
- waits use `RetryPolicy` full jitter; a `Retry-After` header replaces the wait, uncapped, but no wait
  that would end past the question's deadline (`deadline_s`, from its first attempt) is started
  (`RetryPolicy.next_try`, shared with the service clients).
- each attempt gets `min(timeout_s, time left to the deadline)` seconds of wall-clock time; bounding
  it is the attempt's job (`OpenAIJudge._attempt`), given the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from motionnft.contracts.client import RetryPolicy, retry_after_s
from motionnft.contracts.service_client import NextTry
from services.mllm_judge.backends.base import JudgeFailure
from services.mllm_judge.backends.openai_wire import Reply, error_text, parse_json

# The retry warnings keep the backend's logger name, which they had before this module was split off.
logger = logging.getLogger("services.mllm_judge.backends.openai_backend")

Attempt = Callable[[float], Awaitable[Reply]]
"""One request upstream, given the question's deadline (a `time.monotonic()` instant)."""


def is_retryable(status: int) -> bool:
    """Whether an answer of HTTP `status` is worth another try: 429 and every 5xx."""
    return status == 429 or status >= 500


async def complete_with_retries(attempt: Attempt, retry: RetryPolicy, deadline_s: float, timeout_s: float) -> Any:
    """Call `attempt` until a 2xx answer and return its parsed JSON; a JudgeFailure naming the cause otherwise.

    `deadline_s` bounds all tries and waits from now; `timeout_s` (one attempt's limit) is only named
    in the failure of a timed-out try.
    """
    deadline = time.monotonic() + deadline_s
    tries = 0
    while True:
        tries += 1
        retry_after: float | None = None
        try:
            response = await attempt(deadline)
        except (httpx.TransportError, TimeoutError) as exc:
            cause = _transport_text(exc, timeout_s)
        except httpx.HTTPError as exc:  # e.g. a body that fails to decompress: not transient
            raise JudgeFailure(f"upstream answer unreadable: {type(exc).__name__}: {exc}") from None
        else:
            if response.is_success:
                return parse_json(response)
            cause = f"upstream answered HTTP {response.status_code}: {error_text(response)}"
            if not is_retryable(response.status_code):
                raise JudgeFailure(f"{cause} (not retried)")
            retry_after = retry_after_s(response.headers.get("Retry-After"))
        next_try = retry.next_try(tries, retry_after, deadline)
        if next_try.stop is not None:
            raise _give_up(cause, tries, next_try, deadline_s)
        logger.warning(
            "judge upstream attempt %d/%d failed, retrying in %.2f s: %s",
            tries, retry.max_attempts, next_try.wait_s, cause,
        )  # fmt: skip
        await asyncio.sleep(next_try.wait_s)


def _give_up(cause: str, tries: int, next_try: NextTry, deadline_s: float) -> JudgeFailure:
    """The failure of a question after its last try failed with `cause`."""
    if next_try.stop == "attempts":
        return JudgeFailure(f"{cause} (gave up after {tries} attempts)")
    return JudgeFailure(
        f"{cause} (gave up after {tries} attempts: a retry in {next_try.wait_s:.2f} s "
        f"would pass the {deadline_s:.1f} s deadline)"
    )


def _transport_text(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"upstream timed out (limit {timeout_s:g} s per attempt)"
    return f"upstream unreachable: {type(exc).__name__}: {exc}"

"""The HTTP machinery every MotionNFT service client shares: pooling, auth, request ids, bounded
jittered retries, deadlines and problem+json errors. The typed clients are in `client.py`.

Retry rules (the contract callers rely on):
- Only transport errors (connect failures, timeouts, dropped connections) and 429/503 answers are
  retried: those say "not now", everything else says "not this". Other 4xx mean the request is wrong,
  and a 500/502/504 usually repeats; it raises at once with its status, so a caller that knows better
  (a flaky gateway) can retry the whole call itself.
- Waits use full jitter: `uniform(0, min(backoff_max_s, backoff_base_s * 2**retry))` seconds.
- A `Retry-After` header (delta-seconds or HTTP-date) on a 429/503 replaces the jittered wait and is
  NOT capped by `backoff_max_s` (retrying before the server asked only burns an attempt on another
  429). The deadline bounds it instead: a wait that would end past the deadline is never started and
  the call raises the last error at once, rather than sleeping towards a certain failure.
- Each call has an overall deadline (`deadline_s`); each attempt gets `min(timeout_s, remaining)`
  seconds of wall-clock time, so a call never outlives its deadline by more than scheduling noise.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Self, TypeVar

import anyio
import httpx
from pydantic import BaseModel, ValidationError

from motionnft.contracts.problems import ProblemDetail, ServiceError

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)

REQUEST_ID_HEADER = "X-Request-ID"
RETRY_STATUSES = frozenset({429, 503})
# Enough of an unparseable error body to recognise it (an HTML proxy page, a traceback) in a log line.
_SNIPPET_CHARS = 200


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is retried; all durations in seconds."""

    max_attempts: int = 4
    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0

    def backoff_s(self, retry: int) -> float:
        """Full-jitter wait before retry number `retry` (0 for the first retry), in seconds.

        Full jitter spreads many workers that failed together over the whole window, so they do
        not come back in lockstep and knock the service over again.
        """
        return random.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * 2**retry))

    def next_try(self, attempt: int, retry_after: float | None, deadline: float) -> NextTry:
        """After failed try number `attempt` (1 = the first): how long to wait before the next, or why not to.

        `retry_after` (seconds from a `Retry-After` header, or None) replaces the jittered wait, uncapped
        by `backoff_max_s`; `deadline` is the `time.monotonic()` instant that no wait may reach.
        """
        if attempt >= self.max_attempts:
            return NextTry(0.0, "attempts")
        wait_s = retry_after if retry_after is not None else self.backoff_s(attempt - 1)
        if time.monotonic() + wait_s >= deadline:
            return NextTry(wait_s, "deadline")
        return NextTry(wait_s)


@dataclass(frozen=True)
class NextTry:
    """What follows a failed try: wait `wait_s` seconds and try again, unless `stop` says why not.

    `stop` is "attempts" when every try is spent (`wait_s` 0.0: no wait is drawn), "deadline" when
    the wait of `wait_s` seconds would end at or past the call's deadline.
    """

    wait_s: float
    stop: Literal["attempts", "deadline"] | None = None


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header value, or None when absent or unparseable.

    Accepts delta-seconds (`"3"`) and an HTTP-date; a date in the past means "now" (0.0).
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP-dates are GMT by definition
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ServiceUnavailableError(ServiceError):
    """No HTTP answer at all: every attempt failed in transport (connect, timeout, reset).

    `status` is 0 because no server status exists; it must not be mistaken for a server's 503.
    `retryable` is True: the request itself was never judged, so a later try may well succeed.
    """

    def __init__(self, message: str, request_id: str, attempts: int) -> None:
        self.request_id = request_id
        self.attempts = attempts
        super().__init__(0, None, message)

    @property
    def retryable(self) -> bool:
        """Transport failures are transient by nature."""
        return True


class InvalidResponseError(ServiceError):
    """A 2xx answer whose body breaks the contract; never retried and never returned in part."""


def error_from_response(response: httpx.Response, request_id: str) -> ServiceError:
    """The `ServiceError` for a non-2xx answer, with its problem+json (or JSON) body parsed if possible."""
    problem: ProblemDetail | None = None
    content_type = response.headers.get("content-type", "")
    if "json" in content_type:
        try:
            problem = ProblemDetail.model_validate_json(response.content)
        except ValidationError:
            problem = None  # JSON, but not a problem body (e.g. a proxy's own error format)
    if problem is not None:
        text = problem.detail or problem.title
    else:
        text = response.text[:_SNIPPET_CHARS].strip() or response.reason_phrase
    return ServiceError(response.status_code, problem, f"{text} (request {request_id})")


class ServiceClient:
    """Async HTTP client of one MotionNFT service; use as `async with` or call `aclose()`.

    Args:
        base_url: Service root, e.g. `http://reward-api:8000`.
        token: Bearer token sent as `Authorization` when set.
        timeout_s: Wall-clock limit of one attempt, seconds.
        deadline_s: Wall-clock limit of one call including all retries and waits, seconds.
        retry: Retry policy (see the module docstring for what is retried).
        transport: Custom httpx transport (tests, proxies); None uses the default pool.
        headers: Extra headers sent on every request.
        max_connections: Connection pool size; rollout workers keep many calls in flight at once.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        deadline_s: float = 120.0,
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 64,
    ) -> None:
        if timeout_s <= 0 or deadline_s <= 0 or retry.max_attempts < 1:
            raise ValueError("timeout_s and deadline_s must be > 0 and max_attempts >= 1")
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.retry = retry
        all_headers = {"User-Agent": "motionnft-client", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=all_headers,
            timeout=timeout_s,
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _post(
        self,
        path: str,
        body: BaseModel,
        response_model: type[ModelT],
        request_id: str | None = None,
    ) -> ModelT:
        """POST `body` as JSON to `path` with retries, and return the validated answer.

        Raises:
            ServiceError: the service answered non-2xx (after retries for 429/503).
            ServiceUnavailableError: no answer within the attempts and the deadline.
            InvalidResponseError: a 2xx body that does not match `response_model`.
        """
        # One id for every attempt, so server logs tie the retries of one call together.
        request_id = request_id or uuid.uuid4().hex
        payload = body.model_dump(mode="json", exclude_none=False)
        response = await self._send("POST", path, request_id, payload)
        try:
            return response_model.model_validate_json(response.content)
        except ValidationError as exc:
            message = f"{path} answered a body that is not a {response_model.__name__}: {exc.errors()[0]['msg']}"
            raise InvalidResponseError(response.status_code, None, f"{message} (request {request_id})") from exc

    async def _send(self, method: str, path: str, request_id: str, payload: Any) -> httpx.Response:
        """Send with retries until a 2xx answer; raise the last error when out of attempts or time."""
        deadline = time.monotonic() + self.deadline_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            retry_after: float | None = None
            try:
                response = await self._attempt(method, path, request_id, payload, remaining)
            except (httpx.TransportError, TimeoutError) as exc:
                error: ServiceError = ServiceUnavailableError(
                    f"{method} {path} failed in transport after {attempt} attempt(s): "
                    f"{type(exc).__name__}: {exc} (request {request_id})",
                    request_id,
                    attempt,
                )
                error.__cause__ = exc
            else:
                if response.is_success:
                    return response
                error = error_from_response(response, request_id)
                if response.status_code not in RETRY_STATUSES:
                    raise error
                retry_after = retry_after_s(response.headers.get("Retry-After"))
            next_try = self.retry.next_try(attempt, retry_after, deadline)
            if next_try.stop is not None:
                raise error
            logger.warning(
                "retrying %s %s (request %s, attempt %d/%d) in %.2f s after: %s",
                method, path, request_id, attempt, self.retry.max_attempts, next_try.wait_s, error,
            )  # fmt: skip
            await anyio.sleep(next_try.wait_s)

    async def _attempt(
        self, method: str, path: str, request_id: str, payload: Any, remaining_s: float
    ) -> httpx.Response:
        """One attempt (no retries), bounded by `min(timeout_s, remaining_s)` seconds of wall-clock time."""
        budget_s = min(self.timeout_s, remaining_s)
        if budget_s <= 0:
            raise httpx.TimeoutException("call deadline reached before the attempt")
        # httpx's timeout bounds each socket operation; fail_after bounds the whole attempt, so a
        # server that trickles bytes slowly cannot stretch it.
        with anyio.fail_after(budget_s):
            return await self._http.request(
                method,
                path,
                json=payload,
                headers={REQUEST_ID_HEADER: request_id},
                timeout=budget_s,
            )

    async def health(self) -> bool:
        """True when `GET /healthz` answers 200 (the process lives); never raises for a down service."""
        try:
            response = await self._attempt("GET", "/healthz", uuid.uuid4().hex, None, self.timeout_s)
        except (httpx.TransportError, TimeoutError):
            return False
        return response.status_code == 200

    async def wait_ready(self, timeout_s: float = 60.0, interval_s: float = 0.5) -> None:
        """Poll `GET /readyz` every `interval_s` seconds until it answers 200.

        Raises:
            TimeoutError: not ready within `timeout_s` seconds; the message holds the last answer.
        """
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        answered = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self._http.base_url} not ready after {timeout_s:.1f} s: {last}")
            try:
                response = await self._attempt("GET", "/readyz", uuid.uuid4().hex, None, remaining)
            except (httpx.TransportError, TimeoutError) as exc:
                # A probe cut short by the deadline says nothing new; keep the server's last real
                # answer (e.g. "503: still loading weights"), which is what the operator needs.
                cut_by_deadline = time.monotonic() >= deadline and not isinstance(exc, httpx.ConnectError)
                if not (cut_by_deadline and answered):
                    last = f"{type(exc).__name__}: {exc}"
            else:
                answered = True
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:_SNIPPET_CHARS].strip()}"
            await anyio.sleep(max(0.0, min(interval_s, deadline - time.monotonic())))

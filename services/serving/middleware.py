"""Pure ASGI middleware shared by every service: request ids, body limit, load shedding, draining.

Pure ASGI (not BaseHTTPMiddleware) because these wrap every request on the hot path and must not
add a task per request. Order, outermost first: RequestContext -> (metrics) -> Admission -> app.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import SecretStr

from services.serving.auth import UNAUTHORIZED, bearer_matches
from services.serving.problems import problem_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
# A caller's id is echoed into logs and headers: accept only a safe, bounded alphabet.
# (fullmatch, not `^...$`: `$` also matches before a trailing newline, which would let "id\n" through.)
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
access_log = logging.getLogger("motionnft.access")
log = logging.getLogger(__name__)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record so log lines can be traced to a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        return True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    """Assigns the request id (the caller's X-Request-ID if safe, else a new one), echoes and logs it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = given if given and _SAFE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "%s %s -> %d in %.1f ms", scope["method"], scope["path"], status,
                1000 * (time.perf_counter() - started),
            )  # fmt: skip
            current_request_id.reset(token)


class BodyTooLarge(Exception):
    pass


class AdmissionMiddleware:
    """Decides whether a request may run at all, cheapest check first, before any slot is held.

    On paths under `guarded_prefix` (probes and metrics always answer):
    1. auth: with a token set, a missing or wrong bearer token gets 401 from the headers alone, so an
       unauthenticated client never gets its body read, parsed or counted against a limit;
    2. draining (shutdown started): 503 with Retry-After, so new work goes to another replica;
    3. the body is received under a deadline (`body_timeout_s`, else 408) and a size limit
       (`max_body_bytes`, declared or streamed, else 413) *without* holding an in-flight slot, so
       clients that send slowly or stall cannot take the slots of callers whose requests are ready;
    4. more than `max_in_flight` requests being processed: 429 with Retry-After, not an unbounded queue;
    5. a request still running when the graceful-shutdown deadline cancels it answers 503 problem+json
       with Retry-After (uvicorn's own answer would be a plain-text 500 that clients do not retry).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_in_flight: int,
        retry_after_s: int,
        body_timeout_s: float = 15.0,
        token: SecretStr | None = None,
        guarded_prefix: str = "/v1/",
        is_draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.retry_after = str(retry_after_s)
        self.body_timeout_s = body_timeout_s
        self.token = token
        self.guarded_prefix = guarded_prefix
        self.is_draining = is_draining
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.guarded_prefix):
            await self.app(scope, receive, send)
            return
        rid = scope.get("state", {}).get("request_id")

        async def refuse(
            status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None
        ) -> None:
            response = problem_response(
                status, slug, title, detail, instance=scope["path"], request_id=rid, headers=headers
            )
            await response(scope, receive, send)

        retry = {"Retry-After": self.retry_after}
        if self.token is not None and not bearer_matches(_header(scope, b"authorization"), self.token):
            await refuse(401, *UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer", "Connection": "close"})
            return
        if self.is_draining():
            await refuse(503, "draining", "Service is shutting down", "Retry on another replica.", retry)
            return
        if self.in_flight >= self.max_in_flight:  # fail fast, before the body travels
            await refuse(429, *self._overloaded(), retry)
            return
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await self._read_body(scope, receive)
        except BodyTooLarge:
            detail = f"The body exceeds {self.max_body_bytes} bytes."
            await refuse(413, "body-too-large", "Request body too large", detail, {"Connection": "close"})
            return
        except TimeoutError:
            detail = f"The request body did not arrive within {self.body_timeout_s:g} s."
            await refuse(408, "body-timeout", "Request body too slow", detail, {"Connection": "close"})
            return
        if body is None:  # the client went away; nobody to answer
            return
        if self.in_flight >= self.max_in_flight:
            await refuse(429, *self._overloaded(), retry)
            return
        self.in_flight += 1
        try:
            await self._run(scope, _replay(body, receive), send, refuse)
        finally:
            self.in_flight -= 1

    def _overloaded(self) -> tuple[str, str, str]:
        detail = f"More than {self.max_in_flight} requests are being processed; retry later."
        return "overloaded", "Too many requests in flight", detail

    async def _run(self, scope: Scope, receive: Receive, send: Send, refuse: Callable[..., Awaitable[None]]) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            # Only the server cancels a request, at the graceful-shutdown deadline: answer it in a way
            # the client retries elsewhere. Any other cancellation is not ours to swallow.
            if started or not self.is_draining():
                raise
            log.warning("request cut at the shutdown deadline; answered 503")
            detail = "The service shut down before this request finished; retry on another replica."
            await refuse(503, "draining", "Service is shutting down", detail, {"Retry-After": self.retry_after})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None if the client disconnected first; raises BodyTooLarge."""
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the buffered body to the app once, then passes on the live connection's."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay

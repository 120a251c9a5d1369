"""Pure ASGI middleware shared by every service: request ids, body limit, load shedding, draining.

Pure ASGI (not BaseHTTPMiddleware) because these wrap every request on the hot path and must not
add a task per request. Order, outermost first: RequestContext -> (metrics) -> Admission -> app.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

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
    """Decides whether a request may run at all: draining, in-flight limit, body size.

    - draining (shutdown started): 503 with Retry-After, so new work goes to another replica;
    - more than `max_in_flight` requests on guarded paths: 429 with Retry-After instead of queueing
      without bound;
    - a body over `max_body_bytes` (declared or streamed): 413, before it is all buffered.
    Only paths under `guarded_prefix` are limited; probes and metrics always answer.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_in_flight: int,
        retry_after_s: int,
        guarded_prefix: str = "/v1/",
        is_draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.retry_after = str(retry_after_s)
        self.guarded_prefix = guarded_prefix
        self.is_draining = is_draining
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.guarded_prefix):
            await self.app(scope, receive, send)
            return
        rid = scope.get("state", {}).get("request_id")
        retry = {"Retry-After": self.retry_after}
        if self.is_draining():
            response = problem_response(
                503, "draining", "Service is shutting down", "Retry on another replica.",
                instance=scope["path"], request_id=rid, headers=retry,
            )  # fmt: skip
            await response(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            response = problem_response(
                429, "overloaded", "Too many requests in flight",
                f"More than {self.max_in_flight} requests are being processed; retry later.",
                instance=scope["path"], request_id=rid, headers=retry,
            )  # fmt: skip
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            try:
                body = await self._read_body(scope, receive)
            except BodyTooLarge:
                response = problem_response(
                    413, "body-too-large", "Request body too large",
                    f"The body exceeds {self.max_body_bytes} bytes.", instance=scope["path"], request_id=rid,
                )  # fmt: skip
                await response(scope, receive, send)
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.in_flight -= 1

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
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

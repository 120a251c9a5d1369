"""A real HTTP server on loopback whose answers each test scripts, for testing clients end to end.

The server runs uvicorn in a background thread, so the client under test talks to it over real
sockets: retries, timeouts and connection errors behave exactly as they do against a service.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response

from benchmarks.threaded_server import ThreadedServer
from motionnft.stack import free_port


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, body (dict as JSON, str or bytes as given), headers, delay in seconds."""

    status: int = 200
    body: dict[str, Any] | str | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
    delay_s: float = 0.0


@dataclass(frozen=True)
class Hit:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    """Serves scripted replies in order, then `default` forever; records every request as a `Hit`."""

    def __init__(self) -> None:
        self.base_url = ""
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self._default = Reply(status=500, body="unscripted")
        self._hits: list[Hit] = []
        self.app = self._build_app()

    def script(self, *replies: Reply, default: Reply | None = None) -> None:
        """Replace the script and forget earlier hits."""
        with self._lock:
            self._replies = deque(replies)
            self._default = default or Reply(status=500, body="unscripted")
            self._hits = []

    @property
    def hits(self) -> list[Hit]:
        """Requests received since the last `script` call, in arrival order."""
        with self._lock:
            return list(self._hits)

    def _next(self, hit: Hit) -> Reply:
        with self._lock:
            self._hits.append(hit)
            return self._replies.popleft() if self._replies else self._default

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        # One catch-all route: the script, not the routing, decides what each request gets.
        @app.api_route("/{path:path}", methods=["GET", "POST"])
        async def scripted(request: Request) -> Response:
            hit = Hit(request.method, request.url.path, dict(request.headers), await request.body())
            reply = self._next(hit)
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            body = json.dumps(reply.body) if isinstance(reply.body, dict) else reply.body
            return Response(body, reply.status, reply.headers, reply.media_type)

        return app


@contextmanager
def running(server: ScriptedServer) -> Iterator[ScriptedServer]:
    """Serve `server.app` on 127.0.0.1 at a free port in a background thread; stop it on exit."""
    with ThreadedServer(server.app, lifespan="off", name="scripted-server", start_timeout_s=5, stop_timeout_s=5) as url:
        server.base_url = url
        yield server


def closed_port_url() -> str:
    """A loopback URL where nothing listens, so connecting fails at once with connection refused."""
    return f"http://127.0.0.1:{free_port()}"

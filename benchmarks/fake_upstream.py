"""A fake OpenAI-compatible chat-completions server (a vLLM stand-in) on loopback, for tests and benchmarks.

`ChatCompletionsUpstream` is a raw ASGI app, cheap per request: it never decodes images and parses the
request JSON only when it must (below). What it can answer (`Behaviour`, `answer`, `text_answer`,
`error`, ...) is in `benchmarks/fake_answers.py`, re-exported here. `running_upstream` serves it
with uvicorn on 127.0.0.1 (a free port) in a background thread and yields a base URL ending in `/v1`:

    upstream = ChatCompletionsUpstream(logprobs=logprobs_from_levels([0, 0, 0.1, 0.2, 0.7, 0]))
    with running_upstream(upstream) as base_url:
        upstream.script(error(429, retry_after="0"))  # the next request gets a 429, later ones the default
        ...

Routes: `POST /v1/chat/completions`, `GET /v1/models`. What a chat-completions request gets, first
match wins: the `responder`'s Behaviour, when it gives one for the parsed request body (a judge that
looks at the images); the queue of the first `script(..., marker=m)` whose marker occurs in the raw
request body (e.g. a phrase of one question's prompt), then the unmarked queue, then that script's
`then`, then the default answer. The default answer of a request for logprobs is the `logprobs`
completion; of a request for text (`max_tokens` > 1, no logprobs: the judge's describe questions) it
is `default_text` as the message content. Telling them apart costs a search of the raw body for
`"logprobs": true`; only a request without it is parsed (and, with a responder set, every request;
with `record`, every request too). Concurrency: with `max_concurrency` set, requests beyond it wait
their turn on a semaphore (like vLLM's max-num-seqs) and `latency_s` (plus a behaviour's `delay_s`) is spent holding
a slot; `peak_concurrency` is the most requests outstanding at once (arrived, not yet answered),
`peak_running` the most holding a slot.

In its own process (`python -m benchmarks.fake_upstream`, as `bench_judge` runs it) it binds
FAKE_UPSTREAM_HOST:FAKE_UPSTREAM_PORT (or --host/--port), so `UPSTREAM`, a `motionnft.stack.ServiceSpec`,
starts it in a `LocalStack` like the services, ready once `GET /v1/models` answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from benchmarks.fake_answers import (
    DEFAULT_MODEL,
    Behaviour,
    answer,
    completion_body,
    error,
    logprobs_from_levels,
    malformed_json,
    no_choice_tokens,
    slow,
    text_answer,
    text_body,
    without_logprobs,
)
from benchmarks.threaded_server import ThreadedServer
from motionnft.stack import ServiceSpec

__all__ = [
    "DEFAULT_MODEL",
    "UPSTREAM",
    "Behaviour",
    "ChatCompletionsUpstream",
    "Received",
    "answer",
    "completion_body",
    "error",
    "logprobs_from_levels",
    "malformed_json",
    "no_choice_tokens",
    "running_upstream",
    "slow",
    "text_answer",
    "text_body",
    "without_logprobs",
]

UPSTREAM = ServiceSpec("upstream", "benchmarks.fake_upstream", "FAKE_UPSTREAM_", ready_path="/v1/models")
"""The fake upstream as a stack service; its OpenAI base URL is `stack.url("upstream") + "/v1"`."""


@dataclass(frozen=True)
class Received:
    """One request the upstream received: `body` is the parsed JSON (None for a GET or unparseable)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Script:
    queue: deque[Behaviour]
    then: Behaviour | None


class ChatCompletionsUpstream:
    """The fake server as an ASGI app; see the module docstring.

    Args:
        model: the one model id served (`GET /v1/models`).
        logprobs: the default answer's first-token top logprobs.
        latency_s: seconds each request spends holding a slot before its answer (0: none).
        max_concurrency: slots; None means every request runs at once.
        api_key: when set, requests without `Authorization: Bearer <api_key>` get a 401.
        record: keep every request (headers, parsed JSON body) in `received`; off for benchmarks.
        responder: called with the parsed JSON body of every chat-completions request, before the
            scripts; a Behaviour it returns answers the request, None leaves it to the scripts.
        default_text: the default answer's content for a request for text (no logprobs, max_tokens > 1).
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        logprobs: Mapping[str, float] | None = None,
        latency_s: float = 0.0,
        max_concurrency: int | None = None,
        api_key: str | None = None,
        record: bool = True,
        responder: Callable[[Any], Behaviour | None] | None = None,
        default_text: str = "The subject moves.",
    ) -> None:
        self.model = model
        self.responder = responder
        self.latency_s = latency_s
        self.max_concurrency = max_concurrency
        self.record = record
        self.base_url = ""
        self._auth = f"Bearer {api_key}".encode() if api_key else None
        self._default = completion_body(logprobs or {"5": 0.0}, model)
        self._default_text = text_body(default_text, model=model)
        self._models = json.dumps(
            {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "fake"}]}
        ).encode()
        self._lock = threading.Lock()
        self._scripts: dict[bytes | None, _Script] = {}
        self._slots: asyncio.Semaphore | None = None
        self.reset()

    def script(self, *behaviours: Behaviour, marker: str | None = None, then: Behaviour | None = None) -> None:
        """Queue behaviours for the next chat-completions requests (only those whose body holds `marker`,
        when given); `then` is what they get once the queue runs out (default: the default answer)."""
        key = marker.encode() if marker is not None else None
        with self._lock:
            self._scripts[key] = _Script(deque(behaviours), then)

    def reset(self) -> None:
        """Forget scripts, recorded requests and counters (the default answer stays)."""
        with self._lock:
            self._scripts = {}
            self.received: list[Received] = []
            self.served = 0
            # in_flight and running are live gauges (a slow request of an earlier test may still run)
            self.in_flight: int = getattr(self, "in_flight", 0)
            self.running: int = getattr(self, "running", 0)
            self.peak_concurrency = self.in_flight
            self.peak_running = self.running

    @property
    def completions(self) -> list[Received]:
        """The chat-completions requests received, in arrival order."""
        return [r for r in self.received if r.path.endswith("/chat/completions")]

    def _behaviour(self, body: bytes) -> Behaviour | None:
        if not self._scripts:
            return None
        with self._lock:
            scripts = sorted(self._scripts.items(), key=lambda item: item[0] is None)  # markers first
            for key, script in scripts:
                if key is not None and key not in body:
                    continue
                if script.queue:
                    return script.queue.popleft()
                if script.then is not None:
                    return script.then
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else is served
        self.in_flight += 1  # counters are touched only on the server's event loop: no lock needed
        self.peak_concurrency = max(self.peak_concurrency, self.in_flight)
        try:
            body = await _read_body(receive)
            status, payload, headers = await self._handle(scope, body)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        finally:
            self.in_flight -= 1
            self.served += 1

    async def _handle(self, scope: dict[str, Any], body: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        method, path = scope["method"], scope["path"]
        if self.record:
            self._record(scope, body)
        if self._auth is not None and dict(scope["headers"]).get(b"authorization") != self._auth:
            return 401, error(401, message="invalid api key").body or b"", _JSON
        if method == "GET" and path == "/v1/models":
            return 200, self._models, _JSON
        if method != "POST" or path != "/v1/chat/completions":
            return 404, error(404, message=f"no route {method} {path}").body or b"", _JSON
        parsed = _parse(body) if self.responder is not None else None
        behaviour = self.responder(parsed) if self.responder is not None else None
        if behaviour is None:
            behaviour = self._behaviour(body)
        await self._generate(behaviour.delay_s if behaviour else 0.0)
        if behaviour is not None and behaviour.body is not None:
            payload = behaviour.body
        elif behaviour is not None and behaviour.text is not None:
            payload = text_body(behaviour.text, behaviour.logprobs, self.model)
        elif behaviour is not None and behaviour.logprobs:
            payload = completion_body(behaviour.logprobs, self.model)
        else:
            payload = self._default_for(body, parsed)
        if behaviour is None:
            return 200, payload, _JSON
        extra = [(k.lower().encode(), v.encode()) for k, v in behaviour.headers.items()]
        return behaviour.status, payload, _JSON + extra

    def _default_for(self, body: bytes, parsed: Any) -> bytes:
        """The default answer: text for a request for text, else the logprobs completion."""
        if b'"logprobs": true' in body or b'"logprobs":true' in body:
            return self._default  # the fast path: most requests, and every benchmark request
        parsed = parsed if parsed is not None else _parse(body)
        if isinstance(parsed, dict) and not parsed.get("logprobs"):
            max_tokens = parsed.get("max_tokens")
            if isinstance(max_tokens, int) and max_tokens > 1:
                return self._default_text
        return self._default

    async def _generate(self, delay_s: float) -> None:
        """Hold a slot (when bounded) for the latency plus `delay_s`, like a model generating."""
        if self.max_concurrency is None:
            await self._busy(delay_s)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        async with self._slots:
            await self._busy(delay_s)

    async def _busy(self, delay_s: float) -> None:
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        try:
            if self.latency_s + delay_s > 0:
                await asyncio.sleep(self.latency_s + delay_s)
        finally:
            self.running -= 1

    def _record(self, scope: dict[str, Any], body: bytes) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.received.append(Received(scope["method"], scope["path"], headers, _parse(body)))


def _parse(body: bytes) -> Any:
    """The request's JSON, or None when it is empty or not JSON."""
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


_JSON = [(b"content-type", b"application/json")]


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


@contextmanager
def running_upstream(upstream: ChatCompletionsUpstream) -> Iterator[str]:
    """Serve `upstream` with uvicorn on 127.0.0.1 (free port) in a background thread; yield `.../v1`."""
    upstream._slots = None  # a semaphore belongs to one event loop; the server thread makes its own
    with ThreadedServer(upstream, lifespan="off", name="fake-chat-completions", start_timeout_s=10,
                        stop_timeout_s=5) as url:  # fmt: skip
        upstream.base_url = f"{url}/v1"
        yield upstream.base_url


def main() -> None:
    """Serve a fake upstream in the foreground (for benchmarks that want it in its own process)."""
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("FAKE_UPSTREAM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("FAKE_UPSTREAM_PORT", "8000")))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--latency-s", type=float, default=0.05)
    parser.add_argument("--max-concurrency", type=int, default=None)
    args = parser.parse_args()
    upstream = ChatCompletionsUpstream(
        model=args.model,
        logprobs=logprobs_from_levels([0.0, 0.05, 0.1, 0.2, 0.5, 0.15]),
        latency_s=args.latency_s,
        max_concurrency=args.max_concurrency,
        record=False,
    )
    uvicorn.run(upstream, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()

"""An ASGI app under uvicorn on 127.0.0.1 (a free port) in a background thread of this process.

For stand-ins and services that a benchmark or a test runs beside itself (the fake OpenAI upstream,
a service under test, a scripted server): one way to start, wait and stop them. Services that must
run as their own processes go through `motionnft.stack.LocalStack` instead.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, Literal

import uvicorn


class ThreadedServer:
    """`with ThreadedServer(app) as url:` serves `app` until the block ends; `stop()` ends it sooner."""

    def __init__(
        self,
        app: Any,
        *,
        lifespan: Literal["on", "off", "auto"] = "on",
        name: str = "uvicorn",
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
                                lifespan=lifespan, timeout_graceful_shutdown=1)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.name, self.start_timeout_s, self.stop_timeout_s = name, start_timeout_s, stop_timeout_s
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)
        self.url = ""

    def start(self) -> str:
        """Start serving and return the base URL (`http://127.0.0.1:<port>`) once the socket listens."""
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"{self.name} did not start within {self.start_timeout_s:g} s")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        """Ask uvicorn to shut down (in-flight requests get a second) and wait for the thread."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=self.stop_timeout_s)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

"""Run a service under uvicorn with graceful shutdown: in-flight requests finish, new ones get 503."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TypeVar

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from services.serving.app import Readiness
from services.serving.middleware import RequestIdFilter
from services.serving.settings import ServingSettings, UnknownSettingError


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, mark the service as draining before uvicorn stops taking connections."""

    def __init__(self, config: uvicorn.Config, readiness: Readiness) -> None:
        super().__init__(config)
        self.readiness = readiness

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.readiness.draining = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Handle SIGTERM/SIGINT while serving, then restore the previous handlers.

        uvicorn's own version re-raises the caught signal after shutting down, so even a clean drain
        ends with the process killed by SIGTERM (exit 143, a failed container). A drained shutdown is
        a success: the process exits 0.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


S = TypeVar("S", bound=ServingSettings)


def load_settings(settings_cls: type[S], service: str) -> S:
    """The service's settings from its environment, or exit 2 with one line naming what is wrong."""
    try:
        return settings_cls()
    except UnknownSettingError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc'])) or '?'}: {e['msg']}" for e in exc.errors(include_url=False))
        print(f"{service}: invalid settings: {bad}", file=sys.stderr)
    raise SystemExit(2)


def configure_logging(level: str) -> None:
    """One log format for every service, with the request id on each line."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def run_service(app: FastAPI, settings: ServingSettings, readiness: Readiness) -> None:
    """Serve until SIGTERM/SIGINT; blocks."""
    configure_logging(settings.log_level)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # RequestContextMiddleware logs each request with its id
        # uvicorn types it int but waits with asyncio.wait_for: a fraction of a second works (int() made 0.5 s 0).
        timeout_graceful_shutdown=settings.graceful_timeout_s,  # type: ignore[arg-type]
        log_config=None,
    )
    DrainingServer(config, readiness).run()

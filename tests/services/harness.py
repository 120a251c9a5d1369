"""Ways to run a service in tests: in-process (ASGI + lifespan), uvicorn in a thread, or a real process.

Shared by every service's tests, so the reward API and the judge are exercised the same way. A real
process is started by `motionnft.stack.LocalStack`, the launcher the demo and the benchmarks use.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from benchmarks.threaded_server import ThreadedServer
from motionnft.contracts.problems import PROBLEM_MEDIA_TYPE
from motionnft.stack import LocalStack, ServiceSpec
from motionnft.stack import free_port as free_port  # re-exported: tests take a closed port from here

REPO_ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def in_process(app: FastAPI, *, wait_ready: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client wired straight to the app, with its lifespan running (startup and shutdown)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            if wait_ready:
                await wait_until_ready(client)
            yield client


async def wait_until_ready(client: httpx.AsyncClient, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"service not ready after {timeout_s} s: {(await client.get('/readyz')).text}")


@contextmanager
def in_thread(app: FastAPI) -> Iterator[str]:
    """uvicorn serving the app on 127.0.0.1 (free port) in a background thread; yields the base URL once ready."""
    with ThreadedServer(app) as base_url:
        _wait_ready_sync(base_url)
        yield base_url


@contextmanager
def as_process(
    module: str, env: dict[str, str], port_variable: str, log_dir: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m module` as a real process on a free loopback port (a one-service `LocalStack`); yields
    (base URL, process). Its output goes to `<log_dir>/<last part of module>.log` (temporary if None)."""
    spec = ServiceSpec(module.rsplit(".", 1)[-1], module, port_variable.removesuffix("PORT"), env=env)
    with LocalStack([spec], log_dir=log_dir, cwd=REPO_ROOT) as stack:
        yield stack.url(spec.name), stack.process(spec.name)


def _wait_ready_sync(base_url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{base_url} not ready after {timeout_s} s")


def assert_problem(response: httpx.Response, status: int, loc: str | None = None) -> dict:
    """The response is an RFC 9457 problem with this status (and, if given, names this location)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), response.headers
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["type"].startswith("/problems/")
    assert body.get("request_id") == response.headers["x-request-id"]
    if loc is not None:
        locs = [e["loc"] for e in body.get("errors", [])]
        assert loc in locs, f"{loc!r} not among {locs}"
    return body

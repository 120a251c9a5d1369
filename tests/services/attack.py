"""Tools for attacking a running service on loopback and watching it hold: liveness and memory.

`Watch` polls `/healthz` from its own thread and samples the service process's resident memory, so a
test can assert, after an attack, that the probe never took a second and memory stayed bounded.
Raw sockets (`raw_request`) send what no well-behaved client would: headers alone, a stalled body.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import httpx
import psutil


class Watch:
    """Polls GET {base_url}/healthz every `interval_s` and samples the RSS of process `pid`."""

    def __init__(self, base_url: str, pid: int, interval_s: float = 0.05) -> None:
        self.base_url, self.interval_s = base_url, interval_s
        self.process = psutil.Process(pid)
        self.baseline_mb = self.process.memory_info().rss / 2**20
        self.peak_mb = self.baseline_mb
        self.slowest_probe_s = 0.0
        self.failed_probes = 0
        self.probes = 0
        self._stop = threading.Event()
        self._first_probe = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def growth_mb(self) -> float:
        """Peak resident memory during the watch above what it was at the start, MB."""
        return self.peak_mb - self.baseline_mb

    def __enter__(self) -> Watch:
        self._thread.start()
        self._first_probe.wait(timeout=5)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        # One more sample after the attack: growth that stays is growth too.
        self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.slowest_probe_s = max(self.slowest_probe_s, time.perf_counter() - started)
                self.failed_probes += not ok
                self.probes += 1
                self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)
                self._first_probe.set()
                self._stop.wait(self.interval_s)

    def assert_held(self, max_growth_mb: float) -> None:
        """The service answered every probe within 1 s and grew by at most `max_growth_mb`."""
        assert self.probes > 0
        assert self.failed_probes == 0, f"{self.failed_probes} of {self.probes} /healthz probes failed"
        assert self.slowest_probe_s < 1.0, f"/healthz took {self.slowest_probe_s:.2f} s during the attack"
        assert self.growth_mb < max_growth_mb, f"RSS grew by {self.growth_mb:.0f} MB (bound {max_growth_mb} MB)"


def open_request(base_url: str, path: str, headers: dict[str, str], first_bytes: bytes = b"") -> socket.socket:
    """A socket that sent a POST's request line and headers and `first_bytes` of its body, then stalls."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    sock.sendall("\r\n".join(lines).encode() + first_bytes)
    return sock


def read_status(sock: socket.socket, timeout_s: float) -> int | None:
    """The status code of the answer on `sock` within `timeout_s`, or None if none came (or it closed)."""
    sock.settimeout(timeout_s)
    try:
        head = sock.recv(65536)
    except (TimeoutError, OSError):
        return None
    if not head.startswith(b"HTTP/1.1 "):
        return None
    return int(head[9:12])

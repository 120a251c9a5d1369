"""The local stack: services as `python -m` subprocesses on free loopback ports, ready, logged, drained.

One launcher for `make demo`, the benchmarks and the process tests. It knows a service only by its
module, its environment prefix and its readiness route (it imports no service, FastAPI app or Ray),
so the same `ServiceSpec`s can describe a compose file or a bench runner's services:

    with LocalStack([REWARD_API, MLLM_JUDGE.with_env({"MLLM_JUDGE_BACKEND": "similarity"})], log_dir=run) as s:
        s.url("reward_api")   # http://127.0.0.1:<free port>, answering GET /readyz with 200
        s.environment()       # {"REWARD_URL": ..., "JUDGE_URL": ...}

Each service gets `{prefix}HOST`, `{prefix}PORT` and its own variables on top of this process's
environment, and writes stdout and stderr to `<log_dir>/<name>.log` (a temporary folder, removed at
stop, when no `log_dir` is given). Start-up fails fast: a service that exits, or is not ready in
time, raises `StackError` with the tail of its log, after every service started is stopped. On exit
each service gets SIGTERM (the services drain in-flight work and exit 0), then SIGKILL after
`stop_timeout_s`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

log = logging.getLogger("motionnft.stack")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on now (the OS picks it; bind it soon)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one service: `python -m <module> <args...>`, bound by `{env_prefix}HOST`/`PORT`.

    Attributes:
        name: the key for `url`, `process` and `log_path`, and the log file's name (`<name>.log`).
        module: the module run with `python -m`.
        env_prefix: the service's settings prefix (`REWARD_API_`); HOST and PORT are set under it.
        port: a fixed port; None picks a free one at start.
        env: extra environment variables (full names, e.g. `REWARD_API_FLOW_THREADS`).
        args: extra command-line arguments.
        ready_path: polled until it answers 200.
        url_variable: the name `LocalStack.environment` gives the URL (default `<NAME>_URL`).
    """

    name: str
    module: str
    env_prefix: str
    port: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    args: Sequence[str] = ()
    ready_path: str = "/readyz"
    url_variable: str | None = None

    def with_env(self, env: Mapping[str, str]) -> ServiceSpec:
        """This spec with `env` added to (and overriding) its variables."""
        return replace(self, env={**self.env, **env})


REWARD_API = ServiceSpec("reward_api", "services.reward_api", "REWARD_API_", url_variable="REWARD_URL")
MLLM_JUDGE = ServiceSpec("mllm_judge", "services.mllm_judge", "MLLM_JUDGE_", url_variable="JUDGE_URL")


class StackError(RuntimeError):
    """A service did not start: it exited, or was not ready in time. The message ends with its log tail."""


@dataclass
class _Service:
    spec: ServiceSpec
    url: str
    log_path: Path
    log_file: IO[bytes]
    process: subprocess.Popen[bytes]


class LocalStack:
    """Start `specs` on entry (all at once, then wait until every one is ready); stop them on exit.

    Args:
        specs: the services, with distinct names.
        log_dir: where `<name>.log` goes; None means a temporary folder removed at stop.
        host: the bind address given to every service.
        ready_timeout_s: how long the services together get to answer their readiness route.
        stop_timeout_s: how long they get to drain after SIGTERM before they are killed.
        cwd: the services' working directory (None: this process's).
        python: the interpreter that runs them.
    """

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        *,
        log_dir: Path | None = None,
        host: str = "127.0.0.1",
        ready_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
        cwd: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.specs = list(specs)
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be distinct: {names}")
        self.host, self.ready_timeout_s, self.stop_timeout_s = host, ready_timeout_s, stop_timeout_s
        self.cwd, self.python, self.log_dir = cwd, python, log_dir
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        self._services: dict[str, _Service] = {}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Start every service and wait until each is ready; on any failure stop them all and raise."""
        if self._services:
            raise RuntimeError("this stack was started already")
        if self.log_dir is None:
            self._temp = tempfile.TemporaryDirectory(prefix="motionnft-stack-")
        log_dir = Path(self._temp.name) if self._temp is not None else self.log_dir
        assert log_dir is not None
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for spec in self.specs:
                self._services[spec.name] = self._launch(spec, log_dir)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _launch(self, spec: ServiceSpec, log_dir: Path) -> _Service:
        taken = {int(s.url.rsplit(":", 1)[1]) for s in self._services.values()}
        port = spec.port
        while port is None or (spec.port is None and port in taken):  # two free ports in a row may match
            port = free_port(self.host)
        env = {**os.environ, **spec.env, f"{spec.env_prefix}HOST": self.host, f"{spec.env_prefix}PORT": str(port),
               "PYTHONUNBUFFERED": "1"}  # fmt: skip
        log_path = log_dir / f"{spec.name}.log"
        log_file = log_path.open("wb")
        try:
            process = subprocess.Popen(
                [self.python, "-m", spec.module, *spec.args], cwd=self.cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            )  # fmt: skip
        except BaseException:
            log_file.close()
            raise
        host = f"[{self.host}]" if ":" in self.host else self.host
        log.info("started %s (pid %d) on port %d, log %s", spec.name, process.pid, port, log_path)
        return _Service(spec, f"http://{host}:{port}", log_path, log_file, process)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        waiting = list(self._services.values())
        with httpx.Client(timeout=2.0, trust_env=False) as http:  # loopback: no proxy
            while waiting:
                for service in list(waiting):
                    code = service.process.poll()
                    if code is not None:
                        raise StackError(f"{service.spec.name} exited with code {code} before it was ready"
                                         f"{self._tail(service)}")  # fmt: skip
                    try:
                        if http.get(service.url + service.spec.ready_path).status_code == 200:
                            waiting.remove(service)
                    except httpx.TransportError:
                        pass  # not listening yet
                if waiting and time.monotonic() > deadline:
                    names = ", ".join(s.spec.name for s in waiting)
                    raise StackError(f"{names} not ready after {self.ready_timeout_s:g} s{self._tail(waiting[0])}")
                if waiting:
                    time.sleep(0.1)

    @staticmethod
    def _tail(service: _Service, lines: int = 20) -> str:
        text = service.log_path.read_text(errors="replace").rstrip() if service.log_path.exists() else ""
        tail = "\n".join(text.splitlines()[-lines:]) or "(empty)"
        return f"; last lines of {service.log_path}:\n{tail}"

    def stop(self) -> None:
        """SIGTERM every running service, wait up to `stop_timeout_s` for all of them, kill the rest."""
        running = [s for s in self._services.values() if s.process.poll() is None]
        try:
            for service in running:
                service.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout_s
            for service in running:
                try:
                    service.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop within %g s of SIGTERM: killed", service.spec.name,
                                self.stop_timeout_s)  # fmt: skip
        finally:
            for service in self._services.values():
                if service.process.poll() is None:
                    service.process.kill()
                    service.process.wait()
                service.log_file.close()
            if self._temp is not None:
                self._temp.cleanup()
                self._temp = None

    def url(self, name: str) -> str:
        """The base URL of a started service, e.g. `http://127.0.0.1:41234`."""
        return self._services[name].url

    def process(self, name: str) -> subprocess.Popen[bytes]:
        """The service's process (still there after stop, with its return code)."""
        return self._services[name].process

    def log_path(self, name: str) -> Path:
        """Where the service's stdout and stderr go (gone after stop when the folder is temporary)."""
        return self._services[name].log_path

    def environment(self) -> dict[str, str]:
        """Each service's URL under its `url_variable`, for a client configured like a compose file's."""
        return {(s.spec.url_variable or f"{s.spec.name.upper()}_URL"): s.url for s in self._services.values()}

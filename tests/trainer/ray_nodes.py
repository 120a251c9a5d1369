"""A real multi-node Ray cluster on this machine, for tests: one head and worker nodes, each its own raylet.

Each node gets its own loopback address (127.0.0.2, 127.0.0.3, ...): Ray rewrites 127.0.0.1 to the
machine's network address once multi-node mode is on, but leaves the rest of 127/8 alone, so every
byte between the nodes stays on `lo`. Processes are found by the cluster's own temp folder in their
command lines (and their children), so stopping one node or the cluster touches nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from motionnft.stack import free_port

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
# A killed node is declared dead after about 2 s instead of 15-30 s.
FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}


def cluster_env() -> dict[str, str]:
    """The environment every node and driver of the cluster runs with."""
    return {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # else a second node refuses to start
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
    }


@dataclass
class RayNodes:
    """`start_head`, then `add_node` per worker; `stop_node(ip)` kills one node's processes; `stop` all."""

    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rn", dir="/tmp")))
    port: int = field(default_factory=free_port)
    head_ip: str = "127.0.0.2"
    metrics_port: int = field(default_factory=free_port)  # the head's metrics agent (KubeRay: 8080)
    node_env: dict[str, str] = field(default_factory=dict)  # what every pod's env adds (actors inherit it)
    timeout_s: float = 120.0

    @property
    def address(self) -> str:
        return f"{self.head_ip}:{self.port}"

    def start_head(self, num_cpus: int, resources: dict[str, float]) -> None:
        self._ray_start(["--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}", "--include-dashboard=false",
                         "--disable-usage-stats", f"--system-config={json.dumps(FAST_HEALTH_CHECKS)}",
                         f"--metrics-export-port={self.metrics_port}"],
                        self.head_ip, num_cpus, resources)  # fmt: skip

    def add_node(self, ip: str, num_cpus: int, resources: dict[str, float]) -> None:
        self._ray_start([f"--address={self.address}"], ip, num_cpus, resources)
        self.wait_for(lambda nodes: any(n["ip"] == ip and n["alive"] for n in nodes), f"node {ip} to join")

    def _ray_start(self, args: list[str], ip: str, num_cpus: int, resources: dict[str, float]) -> None:
        command = [*RAY, "start", *args, f"--node-ip-address={ip}", f"--num-cpus={num_cpus}", "--num-gpus=0",
                   f"--resources={json.dumps(resources)}", "--object-store-memory=200000000"]  # fmt: skip
        env = {**cluster_env(), **self.node_env}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=self.timeout_s)
        if done.returncode != 0:
            output = done.stdout[-2000:] + done.stderr[-2000:]
            raise RuntimeError(f"ray start on {ip} failed ({done.returncode}): {output}")

    def nodes(self) -> list[dict[str, object]]:
        """Every node the head knows: ip, alive, resources (from a short-lived driver process)."""
        script = (
            "import json, ray; ray.init(address='auto', logging_level='ERROR', log_to_driver=False); "
            "print(json.dumps([{'ip': n['NodeManagerAddress'], 'alive': n['Alive'], 'id': n['NodeID'], "
            "'resources': n['Resources']} for n in ray.nodes()]))"
        )
        env = {**cluster_env(), "RAY_ADDRESS": self.address}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"listing the cluster's nodes failed: {done.stderr[-2000:]}")
        return list(json.loads(done.stdout.strip().splitlines()[-1]))

    def wait_for(self, condition, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + self.timeout_s
        while not condition(self.nodes()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {self.timeout_s:g} s waiting for {what}")
            time.sleep(0.5)

    def processes(self, ip: str | None = None) -> list[psutil.Process]:
        """The cluster's processes (of the node at `ip` only, if given), children included."""
        roots = []
        for proc in psutil.process_iter(["cmdline"]):
            line = " ".join(proc.info["cmdline"] or [])
            if str(self.temp_dir) in line and (ip is None or f"={ip} " in f"{line} "):
                roots.append(proc)
        found = {p.pid: p for p in roots}
        for proc in roots:
            with contextlib.suppress(psutil.NoSuchProcess):
                found |= {c.pid: c for c in proc.children(recursive=True)}
        return list(found.values())

    def stop_node(self, ip: str) -> int:
        """SIGKILL the raylet of the node at `ip` and every process under it (a node lost); returns how many."""
        procs = [p for p in self.processes(ip) if p.is_running()]
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(procs, timeout=10)
        return len(procs)

    def stop(self) -> None:
        """Stop every process of the cluster (SIGTERM, then SIGKILL after 10 s)."""
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()

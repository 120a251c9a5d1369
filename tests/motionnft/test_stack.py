"""LocalStack starts the real services as processes on free loopback ports, logs them, fails fast with
the log when one cannot start, and leaves no process and no bound port behind."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.fake_upstream import UPSTREAM
from motionnft.stack import MLLM_JUDGE, REWARD_API, LocalStack, ServiceSpec, StackError, free_port

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_free_port_can_be_bound() -> None:
    assert port_is_free(free_port())


def test_both_services_start_answer_and_stop(tmp_path: Path) -> None:
    specs = [REWARD_API.with_env({"REWARD_API_FLOW_THREADS": "1"}),
             MLLM_JUDGE.with_env({"MLLM_JUDGE_BACKEND": "similarity"})]  # fmt: skip
    with LocalStack(specs, log_dir=tmp_path, cwd=REPO) as stack:
        urls = {name: stack.url(name) for name in ("reward_api", "mllm_judge")}
        assert stack.environment() == {"REWARD_URL": urls["reward_api"], "JUDGE_URL": urls["mllm_judge"]}
        for url in urls.values():
            assert url.startswith("http://127.0.0.1:")
            assert httpx.get(url + "/readyz", timeout=10).status_code == 200
        assert httpx.get(urls["mllm_judge"] + "/readyz", timeout=10).json()["backend"] == "similarity"
        processes = [stack.process(name) for name in urls]
        ports = [int(url.rsplit(":", 1)[1]) for url in urls.values()]
        assert len(set(ports)) == 2
    for name in urls:
        log = (tmp_path / f"{name}.log").read_text()
        assert "Application startup complete" in log, log
        assert "Application shutdown complete" in log, log  # drained on SIGTERM, not killed
    assert [p.returncode for p in processes] == [0, 0]
    assert all(port_is_free(port) for port in ports)


def test_a_service_that_cannot_start_raises_with_its_log_line_at_once(tmp_path: Path) -> None:
    stack = LocalStack([REWARD_API.with_env({"REWARD_API_MAX_GROUPS": "100000"})], log_dir=tmp_path, cwd=REPO)
    started = time.monotonic()
    with pytest.raises(StackError) as caught:
        stack.__enter__()
    assert time.monotonic() - started < 30  # far below the ready timeout: the exit is seen, not waited out
    message = str(caught.value)
    assert "reward_api exited with code 2 before it was ready" in message
    assert "reward API: invalid settings: max_groups: Input should be less than" in message
    assert stack.process("reward_api").poll() == 2


def test_a_service_that_never_gets_ready_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    never = ServiceSpec("upstream", UPSTREAM.module, UPSTREAM.env_prefix, ready_path="/not-a-route")
    stack = LocalStack([never], log_dir=tmp_path, cwd=REPO, ready_timeout_s=3, stop_timeout_s=5)
    with pytest.raises(StackError, match=r"upstream not ready after 3 s; last lines of .*upstream\.log"):
        stack.__enter__()
    assert stack.process("upstream").poll() is not None
    assert port_is_free(int(stack.url("upstream").rsplit(":", 1)[1]))


def test_fixed_ports_args_and_a_temporary_log_folder() -> None:
    port = free_port()
    upstream = ServiceSpec(UPSTREAM.name, UPSTREAM.module, UPSTREAM.env_prefix, port=port,
                           args=("--model", "fake/other"), ready_path=UPSTREAM.ready_path)  # fmt: skip
    with LocalStack([upstream], cwd=REPO) as stack:
        assert stack.url("upstream") == f"http://127.0.0.1:{port}"
        assert stack.environment() == {"UPSTREAM_URL": f"http://127.0.0.1:{port}"}
        models = httpx.get(stack.url("upstream") + "/v1/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["fake/other"]
        log_path = stack.log_path("upstream")
        assert log_path.exists()
    assert not log_path.parent.exists()  # the temporary folder went with the stack
    assert stack.process("upstream").poll() is not None


def test_service_names_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        LocalStack([REWARD_API, REWARD_API])

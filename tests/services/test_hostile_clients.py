"""Both services, as real processes on loopback, under hostile or careless clients.

Each test reproduces one attack that once starved or swelled a service, bounded in count and time,
and asserts the service held: `/healthz` answered within 1 s throughout (`Watch`), memory grew by
less than a stated bound, and the attack got a clear 4xx problem, never a 500 or a hang.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from motionnft.contracts.images import encode_image
from motionnft.contracts.judge import JUDGE_SCORE_PATH
from motionnft.contracts.motion import MOTION_SCORE_PATH
from tests.motionnft.flow.known_motion import gaussian_bump
from tests.services.attack import Watch, open_request, read_status
from tests.services.harness import as_process, assert_problem

pytestmark = pytest.mark.timeout(180)
TOKEN = "hostile-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_IN_FLIGHT = 8
BODY_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Target:
    name: str
    module: str
    prefix: str
    path: str
    body: Callable[[list[str]], dict[str, Any]]  # images (source, target, edits...) -> request body


def _motion_body(images: list[str]) -> dict[str, Any]:
    return {"groups": [{"source": images[0], "target": images[1], "edits": images[2:]}]}


def _judge_body(images: list[str]) -> dict[str, Any]:
    group = {"instruction": "Move the bump", "source": images[0], "target": images[1], "edits": images[2:]}
    return {"groups": [group], "rubrics": ["edit"]}


TARGETS = {
    "reward_api": Target("reward_api", "services.reward_api", "REWARD_API_", MOTION_SCORE_PATH, _motion_body),
    "mllm_judge": Target("mllm_judge", "services.mllm_judge", "MLLM_JUDGE_", JUDGE_SCORE_PATH, _judge_body),
}


@dataclass
class Running:
    target: Target
    url: str
    pid: int

    def post(self, body: Any, headers: dict[str, str] | None = None, timeout_s: float = 60) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {**AUTH, "content-type": "application/json", **(headers or {})}
        return httpx.post(self.url + self.target.path, content=content, headers=headers, timeout=timeout_s)


def _start(target: Target, **extra: str) -> Iterator[Running]:
    env = {f"{target.prefix}{k.upper()}": v for k, v in {
        "auth_token": TOKEN, "max_in_flight": str(MAX_IN_FLIGHT), "body_timeout_s": str(BODY_TIMEOUT_S), **extra,
    }.items()}  # fmt: skip
    if target.name == "reward_api":
        env["REWARD_API_FLOW_THREADS"] = "1"
    with as_process(target.module, env=env, port_variable=f"{target.prefix}PORT") as (url, process):
        yield Running(target, url, process.pid)


@pytest.fixture(scope="module", params=list(TARGETS))
def service(request: pytest.FixtureRequest) -> Iterator[Running]:
    yield from _start(TARGETS[request.param])


@pytest.fixture(scope="module")
def scene() -> list[str]:
    """source, target, exact edit, static edit (96 x 96, base64 PNG)."""
    motion = gaussian_bump(amplitude=(6.0, -4.0), size=96, margin=8)
    return [encode_image(motion.source), encode_image(motion.target), encode_image(motion.target),
            encode_image(motion.source)]  # fmt: skip


def zero_png(side: int) -> str:
    """An all-black side x side PNG: ~65 KB of body for 4096^2, ~50 MB once decoded."""
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def test_stalled_bodies_take_no_slot_from_real_callers(service: Running, scene: list[str]) -> None:
    """Defect 1: 2 x MAX_IN_FLIGHT connections send headers and 1 byte of a 1,000-byte body, then stall."""
    headers = {"Content-Type": "application/json", "Content-Length": "1000"}
    with Watch(service.url, service.pid) as watch:
        stalled = [open_request(service.url, service.target.path, {**headers, **AUTH}, b"{")
                   for _ in range(2 * MAX_IN_FLIGHT)]  # fmt: skip
        anonymous = [open_request(service.url, service.target.path, headers, b"{") for _ in range(MAX_IN_FLIGHT)]
        time.sleep(0.3)  # every stalled request has reached the server
        for _ in range(3):  # real callers are served while all of them stall
            assert service.post(service.target.body(scene)).status_code == 200
        assert [read_status(sock, 1.0) for sock in anonymous] == [401] * MAX_IN_FLIGHT  # from the headers alone
        started = time.monotonic()
        statuses = [read_status(sock, BODY_TIMEOUT_S + 3.0) for sock in stalled]
        assert statuses == [408] * len(stalled), statuses
        assert time.monotonic() - started < BODY_TIMEOUT_S + 3.0
    for sock in stalled + anonymous:
        sock.close()
    watch.assert_held(max_growth_mb=100)


def test_a_million_bad_items_answer_a_small_422_at_once(service: Running) -> None:
    """Defect 2: `{"groups": [0] * 1_000_000}` (2 MB, valid token) took 32.6 s and answered 101 MB."""
    with Watch(service.url, service.pid) as watch:
        started = time.monotonic()
        response = service.post({"groups": [0] * 1_000_000})
        took = time.monotonic() - started
        unknown_keys = service.post({"groups": [], **{f"k{i}": 0 for i in range(300_000)}})
        long_list = service.post({"groups": [0] * 50_000})  # under the value limit: the list bound fails fast
    problem = assert_problem(response, 422)
    assert took < 3.0 and len(response.content) < 20_000
    assert len(problem["errors"]) <= 20 and "JSON values" in problem["detail"]
    problem = assert_problem(long_list, 422)
    assert problem["errors"] == [{"loc": "groups", "msg": "List should have at most 256 items after validation, "
                                  "not 50000"}]  # fmt: skip
    assert len(assert_problem(unknown_keys, 422)["errors"]) <= 20 and len(unknown_keys.content) < 20_000
    watch.assert_held(max_growth_mb=400)


def test_many_unknown_rubrics_answer_a_small_422() -> None:
    """Defect 2, judge: 100k unknown rubric names once gave an 11 MB answer."""
    for running in _start(TARGETS["mllm_judge"]):
        body = {"groups": [{"instruction": "x", "source": "", "edits": [""]}], "rubrics": ["r" * 50] * 100_000}
        response = running.post(body)
        assert len(assert_problem(response, 422)["errors"]) <= 20 and len(response.content) < 20_000


def test_pixel_budget_is_checked_from_headers_before_decoding(service: Running) -> None:
    """Defect 3: 12 all-zero 4096^2 PNGs (783 KB of body) once peaked +713 MB before any 422."""
    big = zero_png(4096)
    with Watch(service.url, service.pid) as watch:
        started = time.monotonic()
        response = service.post(service.target.body([big] * 12))
        took = time.monotonic() - started
    problem = assert_problem(response, 422)
    assert problem["type"].endswith("limit-exceeded") and "pixels" in problem["detail"]
    assert took < 3.0
    watch.assert_held(max_growth_mb=60)


def test_a_large_edit_is_scored_at_the_documented_side(service: Running) -> None:
    """Defect 3: one 4096^2 edit took 20.5 s (the judge's SSIM on 6 of them peaked at 3.2 GB)."""
    big = zero_png(4096)
    with Watch(service.url, service.pid) as watch:
        started = time.monotonic()
        response = service.post(service.target.body([big, big, big]))
        took = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert took < 5.0
    watch.assert_held(max_growth_mb=300)


def test_target_flow_cache_is_bounded_by_bytes() -> None:
    """Defect 4: 20 new sources with 2048^2 edits grew RSS by 800 MB and kept it (entry-bounded cache)."""
    rng = np.random.default_rng(0)
    for running in _start(TARGETS["reward_api"], cache_mb="4"):
        edit = encode_image(rng.integers(0, 256, (2048, 2048, 3), dtype=np.uint8))
        with Watch(running.url, running.pid) as watch:
            for _ in range(20):
                small = encode_image(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
                assert running.post(_motion_body([small, small, edit])).status_code == 200
        metrics = httpx.get(running.url + "/metrics").text
        held = _gauge(metrics, "reward_api_target_flow_cache_bytes")
        assert 0 < held <= 4 * 2**20 and _gauge(metrics, "reward_api_target_flow_cache_limit_bytes") == 4 * 2**20
        assert _gauge(metrics, "reward_api_target_flow_cache_entries") >= 1
        watch.assert_held(max_growth_mb=250)


def test_a_16_bit_greyscale_png_is_scaled_not_clipped(service: Running, scene: list[str]) -> None:
    """Defect 6: a 16-bit grey PNG was clipped to {0, 255} (99.6% white) and scored as such."""
    ramp8 = np.tile(np.arange(96, dtype=np.uint8) * 2, (96, 1))
    ramp16 = ramp8.astype(np.uint16) * 257  # the same picture at 16 bits
    encoded = []
    for array in (ramp8, ramp16):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode())
    eight, sixteen = (service.post(service.target.body([e, e, e, scene[0]])) for e in encoded)
    assert eight.status_code == sixteen.status_code == 200, sixteen.text
    assert eight.json()["groups"] == sixteen.json()["groups"]


def test_unauthenticated_bodies_are_refused_before_they_are_read(service: Running) -> None:
    """Defect 7: an unauthenticated 60 MB body got its 401 after 2.3 s; bad JSON with no token got 400."""
    with Watch(service.url, service.pid) as watch:
        started = time.monotonic()
        sock = open_request(service.url, service.target.path, {"Content-Length": str(60 * 2**20)}, b"{" * 65536)
        assert read_status(sock, 2.0) == 401
        sock.close()
        assert time.monotonic() - started < 1.0
        response = service.post(b"{not json", headers={"Authorization": "Bearer wrong"})
        assert assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    watch.assert_held(max_growth_mb=30)


def _gauge(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")

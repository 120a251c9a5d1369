"""The reward API as a real process (`python -m services.reward_api`) over real HTTP, through the
same async client the rollout workers use: probes, scoring, OpenAPI pages, auth, graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from motionnft.contracts.client import RetryPolicy, RewardClient
from motionnft.contracts.images import encode_image
from motionnft.contracts.motion import MOTION_SCORE_PATH, MotionGroup, MotionScoreRequest
from motionnft.contracts.problems import PROBLEM_MEDIA_TYPE, ServiceError
from tests.motionnft.flow.known_motion import gaussian_bump
from tests.services.harness import as_process, assert_problem

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
TOKEN = "s3cret-token"
ENV = {"REWARD_API_FLOW_THREADS": "1", "REWARD_API_MAX_WAIT_MS": "1", "REWARD_API_DIS_PRESET": "medium"}
NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.fixture(scope="module")
def motion() -> dict[str, str]:
    full = gaussian_bump(amplitude=(6.0, -4.0), size=96, margin=8)
    return {"source": encode_image(full.source), "target": encode_image(full.target),
            "exact": encode_image(full.target), "none": encode_image(full.source)}  # fmt: skip


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    """One reward API process for the module, with a bearer token; yields its base URL."""
    with as_process("services.reward_api", env={**ENV, "REWARD_API_AUTH_TOKEN": TOKEN},
                    port_variable="REWARD_API_PORT") as (base_url, _):  # fmt: skip
        yield base_url


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts the HTTP requests a client really sends (to see whether it retried)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_probes_and_scoring_over_http(service: str, motion: dict[str, str]) -> None:
    async with RewardClient(service, token=TOKEN, timeout_s=30) as client:
        assert await client.health()
        await client.wait_ready(timeout_s=10)
        group = await client.score_group(
            motion["source"], motion["target"], [motion["none"], motion["exact"]], group_id="g-7"
        )
    assert group.id == "g-7"
    none, exact = (s.reward_continuous for s in group.scores)
    assert exact > none
    async with httpx.AsyncClient(base_url=service) as http:
        ready = (await http.get("/readyz")).json()
        assert ready["status"] == "ready" and ready["flow_backend"].startswith("opencv-dis")
        metrics = (await http.get("/metrics")).text
    assert 'reward_api_requests_total{method="POST",route="/v1/motion/score",status="200"}' in metrics


async def test_openapi_page_and_schema_are_served(service: str) -> None:
    async with httpx.AsyncClient(base_url=service) as http:
        page = await http.get("/docs")
        schema = await http.get("/openapi.json")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in page.text and "swagger" in page.text.lower()
    assert schema.status_code == 200
    body = schema.json()
    assert body["info"]["title"] == "MotionNFT reward API"
    operation = body["paths"][MOTION_SCORE_PATH]["post"]
    assert PROBLEM_MEDIA_TYPE in operation["responses"]["401"]["content"]
    assert "ProblemDetail" in body["components"]["schemas"]
    assert any(scheme.get("scheme") == "bearer" for scheme in body["components"]["securitySchemes"].values())


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_missing_or_wrong_token_is_401_and_not_retried(
    service: str, motion: dict[str, str], token: str | None
) -> None:
    transport = CountingTransport()
    retry = RetryPolicy(max_attempts=4, backoff_base_s=0.01)
    async with RewardClient(service, token=token, transport=transport, retry=retry) as client:
        with pytest.raises(ServiceError) as caught:
            await client.score_group(motion["source"], motion["target"], [motion["exact"]])
    assert caught.value.status == 401 and not caught.value.retryable
    assert caught.value.problem is not None and caught.value.problem.type == "/problems/unauthorized"
    assert transport.sent == [f"POST {MOTION_SCORE_PATH}"]  # exactly one attempt
    async with httpx.AsyncClient(base_url=service) as http:
        assert (await http.get("/healthz")).status_code == 200  # probes need no token


def slow_request() -> MotionScoreRequest:
    """A group that keeps one flow thread busy for a second or two (32 edits at 512x512)."""
    scene = gaussian_bump(amplitude=(5.0, 3.0), size=512)
    edit = encode_image(gaussian_bump(amplitude=(2.0, 1.0), size=512).target)
    group = MotionGroup(source=encode_image(scene.source), target=encode_image(scene.target), edits=[edit] * 32)
    return MotionScoreRequest(groups=[group])


async def wait_for_batch_in_progress(http: httpx.AsyncClient, timeout_s: float = 20.0) -> None:
    """Until the scorer has taken a batch: the request is being scored, not still uploading."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "reward_api_batch_requests_count 1.0" in (await http.get("/metrics")).text:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the slow request never reached the scorer")


async def new_request_after_sigterm(base_url: str, motion: dict[str, str]) -> str:
    """What a brand-new request gets while the service drains: a 503 problem or a refused connection."""
    body = {"groups": [{"source": motion["source"], "target": motion["target"], "edits": [motion["exact"]]}]}
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
            response = await http.post(MOTION_SCORE_PATH, json=body)
    except httpx.TimeoutException:
        raise  # a hang is the one wrong answer
    except httpx.TransportError:  # refused, or accepted just before the listener closed and dropped unanswered
        return "refused"
    assert_problem(response, 503)
    return "503"


async def test_sigterm_drains_in_flight_work_and_exits_cleanly(motion: dict[str, str], tmp_path: Path) -> None:
    request = slow_request()
    with as_process("services.reward_api", env=ENV, port_variable="REWARD_API_PORT", log_dir=tmp_path) as started:
        base_url, process = started
        async with (
            RewardClient(base_url, retry=NO_RETRY, timeout_s=60) as client,
            httpx.AsyncClient(base_url=base_url) as probe,
        ):
            in_flight = asyncio.create_task(client.score(request, request_id="in-flight-1"))
            await wait_for_batch_in_progress(probe)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            await asyncio.sleep(0.05)  # the handler has run: the service is draining
            refused = await new_request_after_sigterm(base_url, motion)
            assert not in_flight.done(), "the request finished before SIGTERM: make it slower"
            response = await asyncio.wait_for(in_flight, 30)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("the process did not exit within 10 s of its in-flight work finishing")
        exited = time.monotonic()
        log = (tmp_path / "reward_api.log").read_text()
    assert [len(g.scores) for g in response.groups] == [32]  # the in-flight request completed with 200
    assert code == 0, f"exit code {code}\n{log}"
    assert refused in ("503", "refused")
    assert exited - signalled < 5, f"exit took {exited - signalled:.1f} s after SIGTERM"
    assert "Application shutdown complete" in log


async def test_work_cut_at_the_shutdown_deadline_answers_a_retryable_503() -> None:
    """Defect 8: past the graceful timeout uvicorn answered in-flight requests a plain-text 500 that no
    client retries. Now they get problem+json 503 with Retry-After (a rollout worker retries elsewhere)."""
    request = slow_request()
    env = {**ENV, "REWARD_API_GRACEFUL_TIMEOUT_S": "0.2"}
    with as_process("services.reward_api", env=env, port_variable="REWARD_API_PORT") as (base_url, process):
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            in_flight = asyncio.create_task(http.post(MOTION_SCORE_PATH, json=request.model_dump()))
            await wait_for_batch_in_progress(http)
            process.send_signal(signal.SIGTERM)
            response = await asyncio.wait_for(in_flight, 30)
        code = process.wait(timeout=30)
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "1"
    assert ServiceError(503, None, response.text).retryable
    assert code == 0

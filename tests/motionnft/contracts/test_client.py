"""RewardClient / ServiceClient against a real scripted HTTP server on loopback.

Retry classification is tested over real sockets (see fake_servers.py); only the exact backoff
arithmetic uses httpx.MockTransport, where sleeps can be recorded instead of waited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anyio
import httpx
import pytest

from motionnft.contracts.client import (
    InvalidResponseError,
    RetryPolicy,
    RewardClient,
    ServiceUnavailableError,
    retry_after_s,
)
from motionnft.contracts.motion import MOTION_SCORE_PATH, MotionGroup, MotionScoreRequest
from motionnft.contracts.problems import PROBLEM_MEDIA_TYPE, ServiceError, problem_type
from motionnft.contracts.service_client import NextTry
from tests.motionnft.contracts.fake_servers import Reply, ScriptedServer, closed_port_url, running

# Tiny waits keep the suite fast while still exercising the retry path.
FAST = RetryPolicy(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05)
IMG = "aGVsbG8="  # the client never decodes images, so any base64 text will do


def _scores(n: int, group_id: str | None = None) -> dict[str, Any]:
    terms = {"vector": 0.1, "direction": 0.2, "movement": 0.0, "distance": 0.3}
    return {"id": group_id, "scores": [{"reward": 0.8, "reward_continuous": 0.77, "terms": terms, "mas": 77.0}] * n}


def _response(*groups: dict[str, Any]) -> dict[str, Any]:
    return {"groups": list(groups), "flow_backend": "farneback", "reward_version": "motion-v1"}


OK = Reply(200, _response(_scores(2, "g0")))


def _problem(status: int, slug: str = "invalid-request", retry_after: str | None = None) -> Reply:
    body = {
        "type": problem_type(slug),
        "title": "Bad things",
        "status": status,
        "detail": f"it is a {status}",
    }
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply(status, body, headers, media_type=PROBLEM_MEDIA_TYPE)


def _request() -> MotionScoreRequest:
    return MotionScoreRequest(groups=[MotionGroup(id="g0", source=IMG, target=IMG, edits=[IMG, IMG])])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def live() -> Iterator[ScriptedServer]:
    with running(ScriptedServer()) as server:
        yield server


@pytest.fixture
def server(live: ScriptedServer) -> ScriptedServer:
    live.script()  # every test starts with an empty script and no recorded hits
    return live


def _client(server: ScriptedServer, **kwargs: Any) -> RewardClient:
    kwargs.setdefault("retry", FAST)
    return RewardClient(server.base_url, **kwargs)


@pytest.mark.anyio
async def test_success_first_try_sends_contract_body_and_request_id(server: ScriptedServer) -> None:
    server.script(OK)
    async with _client(server) as client:
        response = await client.score(_request())
    assert response.groups[0].id == "g0" and len(response.groups[0].scores) == 2
    [hit] = server.hits
    assert (hit.method, hit.path) == ("POST", MOTION_SCORE_PATH)
    assert MotionScoreRequest.model_validate_json(hit.body) == _request()
    assert len(hit.headers["x-request-id"]) == 32
    assert "authorization" not in hit.headers


@pytest.mark.anyio
async def test_503_is_retried_with_same_request_id_and_retry_after_honoured(server: ScriptedServer) -> None:
    server.script(_problem(503, "overloaded", retry_after="1"), OK)
    async with _client(server) as client:
        started = time.monotonic()
        await client.score(_request(), request_id="call-7")
        elapsed = time.monotonic() - started
    assert [h.headers["x-request-id"] for h in server.hits] == ["call-7", "call-7"]
    assert elapsed >= 0.95  # FAST backoff alone would have waited at most 0.05 s


@pytest.mark.anyio
async def test_429_then_success_is_retried_with_one_generated_id(server: ScriptedServer) -> None:
    server.script(Reply(429, "slow down", media_type="text/plain"), OK)
    async with _client(server) as client:
        await client.score(_request())
    ids = {h.headers["x-request-id"] for h in server.hits}
    assert len(server.hits) == 2 and len(ids) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_not_retried_and_carry_the_problem(server: ScriptedServer, status: int) -> None:
    server.script(default=_problem(status))
    async with _client(server) as client:
        with pytest.raises(ServiceError) as caught:
            await client.score(_request())
    assert len(server.hits) == 1
    assert caught.value.status == status and not caught.value.retryable
    assert caught.value.problem is not None
    assert caught.value.problem.detail == f"it is a {status}"
    assert caught.value.problem.type == problem_type("invalid-request")


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 502, 504])
async def test_other_5xx_are_not_retried(server: ScriptedServer, status: int) -> None:
    server.script(default=Reply(status, "<html>upstream broke</html>", media_type="text/html"))
    async with _client(server) as client:
        with pytest.raises(ServiceError) as caught:
            await client.score(_request())
    assert len(server.hits) == 1
    assert caught.value.status == status and caught.value.problem is None
    assert "upstream broke" in str(caught.value)


@pytest.mark.anyio
async def test_json_error_that_is_not_a_problem_gives_no_problem(server: ScriptedServer) -> None:
    server.script(default=Reply(400, {"detail": "plain FastAPI error"}))
    async with _client(server) as client:
        with pytest.raises(ServiceError) as caught:
            await client.score(_request())
    assert caught.value.problem is None and "plain FastAPI error" in str(caught.value)


@pytest.mark.anyio
async def test_transport_errors_are_retried_max_attempts_then_raise(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="motionnft.contracts.client")
    async with RewardClient(closed_port_url(), retry=FAST) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.score(_request(), request_id="rid-1")
    assert caught.value.attempts == FAST.max_attempts
    assert caught.value.status == 0 and caught.value.retryable
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == FAST.max_attempts - 1
    assert all("rid-1" in r.getMessage() for r in retries)


@pytest.mark.anyio
async def test_retry_after_past_the_deadline_fails_fast(server: ScriptedServer) -> None:
    server.script(default=_problem(503, retry_after="10"))
    async with _client(server, deadline_s=1.0, retry=RetryPolicy(max_attempts=10)) as client:
        started = time.monotonic()
        with pytest.raises(ServiceError) as caught:
            await client.score(_request())
        elapsed = time.monotonic() - started
    assert caught.value.status == 503 and caught.value.retryable
    assert elapsed < 1.2
    assert len(server.hits) == 1  # a 10 s wait cannot fit in 1 s, so it is never started


@pytest.mark.anyio
async def test_slow_server_is_bounded_by_attempt_timeout_and_deadline(server: ScriptedServer) -> None:
    server.script(default=Reply(200, _response(_scores(2)), delay_s=1.5))
    async with _client(server, timeout_s=0.3, deadline_s=1.0, retry=RetryPolicy(10, 0.01, 0.02)) as client:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.score(_request())
        elapsed = time.monotonic() - started
    assert 0.85 <= elapsed < 1.3
    assert 3 <= caught.value.attempts <= 5


@pytest.mark.anyio
@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, {"groups": "nope"}),
        Reply(200, "not json at all", media_type="text/plain"),
        Reply(200, _response(_scores(1))),  # valid model, but one score for two edits
        Reply(200, _response(_scores(2), _scores(2))),  # an extra group
    ],
    ids=["wrong-shape", "not-json", "too-few-scores", "extra-group"],
)
async def test_invalid_2xx_body_raises_and_is_not_retried(server: ScriptedServer, reply: Reply) -> None:
    server.script(default=reply)
    async with _client(server) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.score(_request())
    assert isinstance(caught.value, ServiceError) and not caught.value.retryable
    assert len(server.hits) == 1


@pytest.mark.anyio
async def test_bearer_token_and_extra_headers_are_sent(server: ScriptedServer) -> None:
    server.script(OK)
    async with _client(server, token="s3cret", headers={"X-Team": "edits"}) as client:
        await client.score(_request())
    [hit] = server.hits
    assert hit.headers["authorization"] == "Bearer s3cret"
    assert hit.headers["x-team"] == "edits"


@pytest.mark.anyio
async def test_score_group_builds_one_group(server: ScriptedServer) -> None:
    server.script(Reply(200, _response(_scores(3, "p1"))))
    async with _client(server) as client:
        scores = await client.score_group(IMG, IMG, [IMG, IMG, IMG], group_id="p1")
    assert scores.id == "p1" and len(scores.scores) == 3
    sent = MotionScoreRequest.model_validate_json(server.hits[0].body)
    assert sent.groups[0].id == "p1" and len(sent.groups[0].edits) == 3


@pytest.mark.anyio
async def test_wait_ready_returns_once_readyz_flips(server: ScriptedServer) -> None:
    server.script(Reply(503, "loading"), Reply(503, "loading"), default=Reply(200, {"status": "ready"}))
    async with _client(server) as client:
        await client.wait_ready(timeout_s=5.0, interval_s=0.05)
    assert [h.path for h in server.hits] == ["/readyz"] * 3


@pytest.mark.anyio
async def test_wait_ready_times_out_with_last_status(server: ScriptedServer) -> None:
    server.script(default=Reply(503, "still loading weights", media_type="text/plain"))
    async with _client(server) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"503.*still loading weights"):
            await client.wait_ready(timeout_s=1.0, interval_s=0.05)
        assert time.monotonic() - started < 2.0


@pytest.mark.anyio
async def test_wait_ready_keeps_the_last_answer_when_the_final_probe_is_cut(server: ScriptedServer) -> None:
    """A probe the deadline cuts short must not hide the 503 the server gave before (seen in CI)."""
    server.script(
        Reply(503, "still loading weights", media_type="text/plain"),
        default=Reply(200, {"status": "ready"}, delay_s=2.0),
    )
    async with _client(server) as client:
        with pytest.raises(TimeoutError, match=r"503.*still loading weights"):
            await client.wait_ready(timeout_s=1.0, interval_s=0.05)


@pytest.mark.anyio
async def test_wait_ready_and_health_on_a_dead_port() -> None:
    async with RewardClient(closed_port_url()) as client:
        assert not await client.health()
        with pytest.raises(TimeoutError, match="ConnectError"):
            await client.wait_ready(timeout_s=0.2, interval_s=0.05)


@pytest.mark.anyio
async def test_health(server: ScriptedServer) -> None:
    server.script(Reply(200, {"status": "ok"}), Reply(500, "down"))
    async with _client(server) as client:
        assert await client.health()
        assert not await client.health()
    assert [h.path for h in server.hits] == ["/healthz"] * 2


@pytest.mark.anyio
async def test_backoff_waits_use_full_jitter_and_uncapped_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    statuses = iter([503, 503, 503, 429, 200])
    retry_after = {429: "7"}  # above backoff_max_s: honoured as sent

    def answer(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status == 200:
            return httpx.Response(200, json=_response(_scores(2)))
        return httpx.Response(status, headers={"Retry-After": retry_after[status]} if status in retry_after else {})

    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(anyio, "sleep", record)
    policy = RetryPolicy(max_attempts=5, backoff_base_s=0.2, backoff_max_s=0.5)
    async with RewardClient("http://reward", retry=policy, transport=httpx.MockTransport(answer)) as client:
        await client.score(_request())
    assert len(waits) == 4
    assert 0 <= waits[0] <= 0.2 and 0 <= waits[1] <= 0.4 and 0 <= waits[2] <= 0.5
    assert waits[3] == 7.0


def test_full_jitter_covers_the_window() -> None:
    policy = RetryPolicy(backoff_base_s=0.2, backoff_max_s=5.0)
    draws = [policy.backoff_s(10) for _ in range(2000)]
    assert 0 <= min(draws) < 0.5 and 4.5 < max(draws) <= 5.0


def test_next_try_stops_when_out_of_attempts_or_past_the_deadline() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_base_s=0.2, backoff_max_s=0.5)
    far = time.monotonic() + 3600.0
    first = policy.next_try(1, None, far)
    assert first.stop is None and 0 <= first.wait_s <= 0.2
    assert policy.next_try(2, 7.0, far) == NextTry(7.0)  # a Retry-After replaces the jitter, uncapped
    assert policy.next_try(3, 7.0, far) == NextTry(0.0, "attempts")
    assert policy.next_try(1, 7.0, time.monotonic() + 5.0) == NextTry(7.0, "deadline")


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("3", now) == 3.0
    assert retry_after_s(" 0 ", now) == 0.0
    assert retry_after_s(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_s(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert retry_after_s(None, now) is None
    assert retry_after_s("soon", now) is None
    assert retry_after_s("-1", now) is None

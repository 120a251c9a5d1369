"""The reward API in-process, what is its own: ranking motion, the target-flow cache, batching of
concurrent requests, overload through the batch queue, and a failed load. The edge it shares with
the judge (bad input, auth, limits, metrics, request ids, draining) is in tests/services/test_contract.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from motionnft.contracts.images import encode_image
from motionnft.contracts.motion import MOTION_SCORE_PATH, MotionScoreResponse
from tests.motionnft.flow.known_motion import gaussian_bump
from tests.services.contract import reward_app
from tests.services.harness import assert_problem, in_process

pytestmark = pytest.mark.anyio
SIZE = 96


@pytest.fixture(scope="module")
def motion() -> dict[str, str]:
    """A photograph, its locally warped target, and edits: exact, half, none, opposite (base64 PNG)."""
    full = gaussian_bump(amplitude=(6.0, -4.0), size=SIZE, margin=8)
    half = gaussian_bump(amplitude=(3.0, -2.0), size=SIZE, margin=8)
    opposite = gaussian_bump(amplitude=(-6.0, 4.0), size=SIZE, margin=8)
    return {
        "source": encode_image(full.source),
        "target": encode_image(full.target),
        "exact": encode_image(full.target),
        "half": encode_image(half.target),
        "none": encode_image(full.source),
        "opposite": encode_image(opposite.target),
    }


def body(motion: dict[str, str], edits: list[str] | None = None, **group: object) -> dict:
    edits = edits if edits is not None else [motion["exact"], motion["none"]]
    return {"groups": [{"source": motion["source"], "target": motion["target"], "edits": edits, **group}]}


async def test_scores_edits_in_order_and_ranks_motion(motion: dict[str, str]) -> None:
    names = ["none", "exact", "opposite", "half"]
    async with in_process(reward_app()) as client:
        response = await client.post(MOTION_SCORE_PATH, json=body(motion, [motion[n] for n in names], id="g-1"))
    assert response.status_code == 200, response.text
    parsed = MotionScoreResponse.model_validate(response.json())
    assert parsed.groups[0].id == "g-1"
    assert parsed.flow_backend.startswith("opencv-dis")
    assert parsed.reward_version
    scores = {n: s.reward_continuous for n, s in zip(names, parsed.groups[0].scores, strict=True)}
    assert scores["exact"] > scores["half"] > scores["none"] > scores["opposite"], scores
    for s in parsed.groups[0].scores:
        assert s.reward in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        assert set(s.terms.model_dump()) == {"vector", "direction", "movement", "distance"}


async def test_several_groups_and_target_flow_cache(motion: dict[str, str]) -> None:
    app = reward_app()
    request = {"groups": [body(motion, id=str(i))["groups"][0] for i in range(3)]}
    async with in_process(app) as client:
        first = (await client.post(MOTION_SCORE_PATH, json=request)).json()
        second = (await client.post(MOTION_SCORE_PATH, json=request)).json()
        metrics = (await client.get("/metrics")).text
    assert [g["id"] for g in first["groups"]] == ["0", "1", "2"]
    assert first == second  # deterministic, and the cached target flow gives the same answer
    cache = app.state.scorer.motion.cache
    assert cache.misses == 1 and cache.hits >= 1  # one target flow for 6 groups: deduplicated, then cached
    assert "reward_api_target_flow_cache_hits_total" in metrics


async def test_concurrent_requests_are_batched(motion: dict[str, str]) -> None:
    app = reward_app(max_wait_ms=100.0, max_batch=64)
    async with in_process(app) as client:
        responses = await asyncio.gather(*(client.post(MOTION_SCORE_PATH, json=body(motion)) for _ in range(6)))
        text = (await client.get("/metrics")).text
    assert all(r.status_code == 200 for r in responses)
    assert len({json.dumps(r.json()) for r in responses}) == 1
    batches = float(_metric(text, "reward_api_batch_requests_count"))
    assert batches < 6, f"6 concurrent requests ran in {batches} batches"


async def test_overload_sheds_with_retry_after(motion: dict[str, str]) -> None:
    app = reward_app(max_wait_ms=300.0, max_queue=4, retry_after_s=2)
    async with in_process(app) as client:
        responses = await asyncio.gather(*(client.post(MOTION_SCORE_PATH, json=body(motion)) for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and statuses[-1] == 503, statuses
    shed = next(r for r in responses if r.status_code == 503)
    assert_problem(shed, 503)
    assert shed.headers["retry-after"] == "2"


async def test_not_ready_until_loaded_and_failure_is_reported(motion: dict[str, str]) -> None:
    app = reward_app(flow_backend="raft_small", raft_checkpoint="/nonexistent/raft.pth")
    async with in_process(app, wait_ready=False) as client:
        for _ in range(200):
            if app.state.readiness.error:
                break
            await asyncio.sleep(0.02)
        ready = assert_problem(await client.get("/readyz"), 503)
        assert "raft.pth" in ready["detail"]
        response = await client.post(MOTION_SCORE_PATH, json=body(motion))
        assert_problem(response, 503)
        assert "retry-after" in response.headers
        assert (await client.get("/healthz")).status_code == 200


def _metric(text: str, name: str) -> str:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return line.split()[-1]

"""The reward API in-process: scoring, every kind of bad input, auth, limits, metrics, readiness."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from motionnft.contracts.images import encode_image
from motionnft.contracts.motion import MOTION_SCORE_PATH, MotionScoreResponse
from services.reward_api.app import create_app
from services.reward_api.settings import RewardApiSettings
from tests.motionnft.flow.known_motion import gaussian_bump
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


def settings(**overrides: object) -> RewardApiSettings:
    return RewardApiSettings(**{"max_wait_ms": 1.0, "flow_threads": 1, **overrides})  # type: ignore[arg-type]


def body(motion: dict[str, str], edits: list[str] | None = None, **group: object) -> dict:
    edits = edits if edits is not None else [motion["exact"], motion["none"]]
    return {"groups": [{"source": motion["source"], "target": motion["target"], "edits": edits, **group}]}


async def test_scores_edits_in_order_and_ranks_motion(motion: dict[str, str]) -> None:
    names = ["none", "exact", "opposite", "half"]
    async with in_process(create_app(settings())) as client:
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
    app = create_app(settings())
    request = {"groups": [body(motion, id=str(i))["groups"][0] for i in range(3)]}
    async with in_process(app) as client:
        first = (await client.post(MOTION_SCORE_PATH, json=request)).json()
        second = (await client.post(MOTION_SCORE_PATH, json=request)).json()
        metrics = (await client.get("/metrics")).text
    assert [g["id"] for g in first["groups"]] == ["0", "1", "2"]
    assert first == second  # deterministic, and the cached target flow gives the same answer
    cache = app.state.scorer.scorer.cache
    assert cache.misses == 1 and cache.hits >= 1  # one target flow for 6 groups: deduplicated, then cached
    assert "reward_api_target_flow_cache_hits_total" in metrics


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def bad_image(kind: str) -> str:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    if kind == "invalid-base64":
        return "not base64 at all!"
    if kind == "not-an-image":
        return b64(b"hello, this is text and not an image" * 4)
    if kind == "truncated-png":
        return b64(png_bytes(image)[:-200])
    if kind == "bomb":  # 6000x6000 zeros: ~100 KB of PNG, 36 M pixels once decoded
        return b64(png_bytes(np.zeros((6000, 6000), dtype=np.uint8)))
    if kind == "too-small":
        return b64(png_bytes(image[:8, :8]))
    if kind == "gif":
        return b64(png_bytes(image, "GIF"))
    if kind == "empty":
        return ""
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind", ["invalid-base64", "not-an-image", "truncated-png", "bomb", "too-small", "gif", "empty"]
)
async def test_bad_images_name_their_place(motion: dict[str, str], kind: str) -> None:
    edits = [motion["exact"], motion["none"], motion["half"], bad_image(kind)]
    async with in_process(create_app(settings())) as client:
        response = await client.post(MOTION_SCORE_PATH, json=body(motion, edits))
        assert_problem(response, 422, "groups[0].edits[3]")
        # The service keeps serving after bad input.
        assert (await client.post(MOTION_SCORE_PATH, json=body(motion))).status_code == 200


async def test_bad_source_and_target_are_named(motion: dict[str, str]) -> None:
    request = body(motion)
    request["groups"][0]["source"] = bad_image("not-an-image")
    request["groups"][0]["target"] = bad_image("truncated-png")
    async with in_process(create_app(settings())) as client:
        problem = assert_problem(await client.post(MOTION_SCORE_PATH, json=request), 422)
    assert {e["loc"] for e in problem["errors"]} == {"groups[0].source", "groups[0].target"}


async def test_image_over_the_size_limit(motion: dict[str, str]) -> None:
    async with in_process(create_app(settings(max_image_side=64))) as client:
        assert_problem(await client.post(MOTION_SCORE_PATH, json=body(motion)), 422, "groups[0].source")


@pytest.mark.parametrize(
    ("mutate", "status", "loc"),
    [
        (lambda b: b["groups"][0].update(edits=[]), 422, "groups[0].edits"),
        (lambda b: b["groups"][0].update(edits=b["groups"][0]["edits"] * 20), 422, "groups[0].edits"),
        (lambda b: b.update(groups=b["groups"] * 17), 422, "groups"),
        (lambda b: b.update(groups=[]), 422, "groups"),
        (lambda b: b["groups"][0].update(edits="abc"), 422, "groups[0].edits"),
        (lambda b: b["groups"][0].update(edits=[1.5]), 422, "groups[0].edits[0]"),
        (lambda b: b["groups"][0].update(source=None), 422, "groups[0].source"),
        (lambda b: b["groups"][0].update(colour="red"), 422, "groups[0].colour"),
        (lambda b: b.pop("groups"), 422, "groups"),
    ],
    ids=["zero-edits", "too-many-edits", "too-many-groups", "no-groups", "edits-string", "edit-number",
         "null-source", "unknown-field", "missing-groups"],
)  # fmt: skip
async def test_malformed_requests(motion: dict[str, str], mutate, status: int, loc: str) -> None:
    request = body(motion)
    mutate(request)
    async with in_process(create_app(settings())) as client:
        assert_problem(await client.post(MOTION_SCORE_PATH, json=request), status, loc)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"groups": [{"source": NaN, "target": "x", "edits": ["y"]}]}', b"[]", b"null", b""],
    ids=["broken", "nan", "array", "null", "empty"],
)
async def test_non_json_and_odd_json(raw: bytes) -> None:
    async with in_process(create_app(settings())) as client:
        response = await client.post(MOTION_SCORE_PATH, content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code)


async def test_body_over_the_limit(motion: dict[str, str]) -> None:
    async with in_process(create_app(settings(max_body_bytes=10_000))) as client:
        assert_problem(await client.post(MOTION_SCORE_PATH, json=body(motion)), 413)

        async def stream():  # no Content-Length: the limit must hold while streaming too
            for _ in range(20):
                yield b" " * 1000

        response = await client.post(MOTION_SCORE_PATH, content=stream(), headers={"content-type": "application/json"})
        assert_problem(response, 413)


async def test_bearer_token(motion: dict[str, str]) -> None:
    async with in_process(create_app(settings(auth_token="s3cret"))) as client:
        missing = assert_problem(await client.post(MOTION_SCORE_PATH, json=body(motion)), 401)
        assert "Bearer" in missing["detail"]
        wrong = await client.post(MOTION_SCORE_PATH, json=body(motion), headers={"Authorization": "Bearer nope"})
        assert_problem(wrong, 401)
        assert wrong.headers["www-authenticate"] == "Bearer"
        right = await client.post(MOTION_SCORE_PATH, json=body(motion), headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert (await client.get("/healthz")).status_code == 200  # probes stay open


async def test_request_id_echoed_or_generated(motion: dict[str, str]) -> None:
    async with in_process(create_app(settings())) as client:
        given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        generated = await client.get("/healthz")
        unsafe = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert given.headers["x-request-id"] == "abc-123"
    assert len(generated.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_metrics_exposed(motion: dict[str, str]) -> None:
    async with in_process(create_app(settings())) as client:
        await client.post(MOTION_SCORE_PATH, json=body(motion))
        await client.post(MOTION_SCORE_PATH, json={"groups": []})
        await client.get("/no/such/path")
        text = (await client.get("/metrics")).text
    for needle in [
        'reward_api_requests_total{method="POST",route="/v1/motion/score",status="200"} 1.0',
        'reward_api_errors_total{route="/v1/motion/score",status="422"} 1.0',
        'reward_api_requests_total{method="GET",route="<unmatched>",status="404"} 1.0',
        "reward_api_request_duration_seconds_bucket",
        "reward_api_in_flight_requests",
        "reward_api_batch_items_bucket",
        "reward_api_target_flow_cache_misses_total 1.0",
        "reward_api_flow_batch_seconds_count",
    ]:
        assert needle in text, needle


async def test_concurrent_requests_are_batched(motion: dict[str, str]) -> None:
    app = create_app(settings(max_wait_ms=100.0, max_batch=64))
    async with in_process(app) as client:
        responses = await asyncio.gather(*(client.post(MOTION_SCORE_PATH, json=body(motion)) for _ in range(6)))
        text = (await client.get("/metrics")).text
    assert all(r.status_code == 200 for r in responses)
    assert len({json.dumps(r.json()) for r in responses}) == 1
    batches = float(_metric(text, "reward_api_batch_requests_count"))
    assert batches < 6, f"6 concurrent requests ran in {batches} batches"


async def test_overload_sheds_with_retry_after(motion: dict[str, str]) -> None:
    app = create_app(settings(max_wait_ms=300.0, max_queue=4, retry_after_s=2))
    async with in_process(app) as client:
        responses = await asyncio.gather(*(client.post(MOTION_SCORE_PATH, json=body(motion)) for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and statuses[-1] == 503, statuses
    shed = next(r for r in responses if r.status_code == 503)
    assert_problem(shed, 503)
    assert shed.headers["retry-after"] == "2"


async def test_not_ready_until_loaded_and_failure_is_reported(motion: dict[str, str]) -> None:
    app = create_app(settings(flow_backend="raft_small", raft_checkpoint="/nonexistent/raft.pth"))
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


async def test_draining_refuses_new_work(motion: dict[str, str]) -> None:
    app = create_app(settings())
    async with in_process(app) as client:
        app.state.readiness.draining = True
        assert_problem(await client.post(MOTION_SCORE_PATH, json=body(motion)), 503)
        assert_problem(await client.get("/readyz"), 503)


async def test_openapi_declares_problem_responses() -> None:
    async with in_process(create_app(settings()), wait_ready=False) as client:
        schema = (await client.get("/openapi.json")).json()
    responses = schema["paths"][MOTION_SCORE_PATH]["post"]["responses"]
    for status in ("400", "401", "413", "422", "429", "503"):
        assert "application/problem+json" in responses[status]["content"], status
    assert "ProblemDetail" in schema["components"]["schemas"]


def _metric(text: str, name: str) -> str:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return line.split()[-1]


async def test_client_error_is_not_a_500_for_wrong_method() -> None:
    async with in_process(create_app(settings())) as client:
        response = await client.get(MOTION_SCORE_PATH)
    assert_problem(response, 405)
    assert isinstance(httpx.Response, type)

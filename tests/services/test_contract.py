"""Every service's edge, in-process, written once and run against each `ServiceSpec` (contract.py):
bad images named by their place, malformed and oversized requests, auth, request ids, metrics,
draining, the OpenAPI declarations and routing errors. Service-specific behaviour (what a score
means, caching, batching) lives in each service's own test_app.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from motionnft.contracts.problems import PROBLEM_MEDIA_TYPE
from tests.services.contract import BAD_IMAGES, SPECS, ServiceSpec, bad_image, get_at, scene, set_at
from tests.services.harness import assert_problem, in_process

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture(params=SPECS, ids=lambda s: s.name)
def spec(request: pytest.FixtureRequest) -> ServiceSpec:
    return request.param


@pytest.mark.parametrize("kind", BAD_IMAGES)
async def test_bad_images_name_their_place(spec: ServiceSpec, kind: str) -> None:
    edits = [*scene().edits[:3], bad_image(kind)]
    async with in_process(spec.create_app()) as client:
        response = await client.post(spec.path, json=spec.valid_body(edits))
        problem = assert_problem(response, 422, spec.edit_loc.format(k=3))
        assert [e["loc"] for e in problem["errors"]] == [spec.edit_loc.format(k=3)]  # only the bad one
        # The service keeps serving after bad input.
        assert (await client.post(spec.path, json=spec.valid_body())).status_code == 200


async def test_every_bad_image_is_named_in_one_answer(spec: ServiceSpec) -> None:
    request = spec.valid_body([scene().edits[0], bad_image("gif")])
    kinds = iter(["not-an-image", "truncated-png", "invalid-base64"])
    for loc in spec.image_locs:
        set_at(request, loc, bad_image(next(kinds)))
    async with in_process(spec.create_app()) as client:
        problem = assert_problem(await client.post(spec.path, json=request), 422)
    assert [e["loc"] for e in problem["errors"]] == [*spec.image_locs, spec.edit_loc.format(k=1)]
    assert spec.source_loc in problem["detail"]


async def test_bad_source_is_named(spec: ServiceSpec) -> None:
    request = spec.valid_body()
    set_at(request, spec.source_loc, bad_image("not-an-image"))
    async with in_process(spec.create_app()) as client:
        problem = assert_problem(await client.post(spec.path, json=request), 422, spec.source_loc)
    assert [e["loc"] for e in problem["errors"]] == [spec.source_loc]
    assert problem["type"] == "/problems/invalid-image"


async def test_image_over_the_size_limit(spec: ServiceSpec) -> None:
    app = spec.create_app(**{spec.limits.image_side: 64})  # the test images are 96 x 96
    async with in_process(app) as client:
        problem = assert_problem(await client.post(spec.path, json=spec.valid_body()), 422, spec.source_loc)
    assert "at most 64 pixels" in problem["errors"][0]["msg"]


# Each case mutates a valid body (limits: 2 groups, 3 edits) and names the location the answer must give.
Mutation = Callable[[ServiceSpec, dict[str, Any]], str]


def _zero_edits(spec: ServiceSpec, body: dict[str, Any]) -> str:
    set_at(body, spec.edits_loc, [])
    return spec.edits_loc


def _too_many_edits(spec: ServiceSpec, body: dict[str, Any]) -> str:
    set_at(body, spec.edits_loc, list(scene().edits))  # 4 > 3
    return spec.edits_loc


def _too_many_groups(spec: ServiceSpec, body: dict[str, Any]) -> str:
    body[spec.groups_key] = body[spec.groups_key] * 3  # 3 > 2
    return spec.groups_key


def _no_groups(spec: ServiceSpec, body: dict[str, Any]) -> str:
    body[spec.groups_key] = []
    return spec.groups_key


def _edits_string(spec: ServiceSpec, body: dict[str, Any]) -> str:
    set_at(body, spec.edits_loc, "abc")
    return spec.edits_loc


def _edit_number(spec: ServiceSpec, body: dict[str, Any]) -> str:
    set_at(body, spec.edit_loc.format(k=0), 1.5)
    return spec.edit_loc.format(k=0)


def _null_source(spec: ServiceSpec, body: dict[str, Any]) -> str:
    set_at(body, spec.source_loc, None)
    return spec.source_loc


def _unknown_field(spec: ServiceSpec, body: dict[str, Any]) -> str:
    group_loc = spec.edits_loc.rsplit(".", 1)[0]
    get_at(body, group_loc)["colour"] = "red"
    return f"{group_loc}.colour"


def _missing_groups(spec: ServiceSpec, body: dict[str, Any]) -> str:
    body.pop(spec.groups_key)
    return spec.groups_key


MALFORMED: dict[str, Mutation] = {
    "zero-edits": _zero_edits,
    "too-many-edits": _too_many_edits,
    "too-many-groups": _too_many_groups,
    "no-groups": _no_groups,
    "edits-string": _edits_string,
    "edit-number": _edit_number,
    "null-source": _null_source,
    "unknown-field": _unknown_field,
    "missing-groups": _missing_groups,
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_malformed_requests(spec: ServiceSpec, case: str) -> None:
    request = spec.valid_body()
    loc = MALFORMED[case](spec, request)
    app = spec.create_app(**{spec.limits.groups: 2, spec.limits.edits: 3})
    async with in_process(app) as client:
        problem = assert_problem(await client.post(spec.path, json=request), 422, loc)
        assert problem["type"] in ("/problems/invalid-request", "/problems/limit-exceeded")
        # Within the limits exactly: accepted.
        at_limit = spec.valid_body(list(scene().edits[:3]))
        at_limit[spec.groups_key] *= 2
        assert (await client.post(spec.path, json=at_limit)).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"groups": [{"source": NaN, "target": "x", "edits": ["y"]}]}', b"[]", b"null", b"",
     b'{"groups": "\xff\xfe"}', b"\x00" * 16],
    ids=["broken", "nan", "array", "null", "empty", "not-utf8", "binary"],
)  # fmt: skip
async def test_non_json_and_odd_json(spec: ServiceSpec, raw: bytes) -> None:
    async with in_process(spec.create_app()) as client:
        response = await client.post(spec.path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code)


async def test_body_over_the_limit(spec: ServiceSpec) -> None:
    async with in_process(spec.create_app(max_body_bytes=10_000)) as client:
        assert_problem(await client.post(spec.path, json=spec.valid_body()), 413)

        async def stream():  # no Content-Length: the limit must hold while streaming too
            for _ in range(20):
                yield b" " * 1000

        response = await client.post(spec.path, content=stream(), headers={"content-type": "application/json"})
        assert_problem(response, 413)
        assert (await client.get("/healthz")).status_code == 200


async def test_bearer_token(spec: ServiceSpec) -> None:
    body = spec.valid_body()
    async with in_process(spec.create_app(auth_token="s3cret")) as client:
        missing = assert_problem(await client.post(spec.path, json=body), 401)
        assert "Bearer" in missing["detail"]
        wrong = await client.post(spec.path, json=body, headers={"Authorization": "Bearer nope"})
        assert_problem(wrong, 401)
        assert wrong.headers["www-authenticate"] == "Bearer"
        not_bearer = await client.post(spec.path, json=body, headers={"Authorization": "Basic czNjcmV0"})
        assert_problem(not_bearer, 401)
        right = await client.post(spec.path, json=body, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200, right.text
        for probe in ("/healthz", "/readyz", "/metrics"):  # probes and metrics stay open
            assert (await client.get(probe)).status_code == 200, probe


async def test_request_id_echoed_generated_and_sanitised(spec: ServiceSpec) -> None:
    async with in_process(spec.create_app()) as client:
        given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        generated = await client.get("/healthz")
        unsafe = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
        too_long = await client.get("/healthz", headers={"X-Request-ID": "a" * 129})
        scored = await client.post(spec.path, json=spec.valid_body(), headers={"X-Request-ID": "run-7.step:3"})
        refused = await client.post(spec.path, json={}, headers={"X-Request-ID": "bad-request-1"})
    assert given.headers["x-request-id"] == "abc-123"
    assert len(generated.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"
    assert len(unsafe.headers["x-request-id"]) == 32
    assert len(too_long.headers["x-request-id"]) == 32
    assert scored.headers["x-request-id"] == "run-7.step:3"
    assert assert_problem(refused, 422)["request_id"] == "bad-request-1"


async def test_metrics_exposed(spec: ServiceSpec) -> None:
    async with in_process(spec.create_app()) as client:
        assert (await client.post(spec.path, json=spec.valid_body())).status_code == 200
        await client.post(spec.path, json={spec.groups_key: []})
        await client.get("/no/such/path")
        await client.get(f"/no/such/path/{'x' * 50}")
        response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    ns, text = spec.namespace, response.text
    for needle in [
        f'{ns}_requests_total{{method="POST",route="{spec.path}",status="200"}} 1.0',
        f'{ns}_errors_total{{route="{spec.path}",status="422"}} 1.0',
        f'{ns}_requests_total{{method="GET",route="<unmatched>",status="404"}} 2.0',
        f"{ns}_request_duration_seconds_bucket",
        f"{ns}_in_flight_requests",
        f"{ns}_batch_items_bucket",
        *spec.metrics,
    ]:
        assert needle in text, needle
    other = next(s for s in SPECS if s.namespace != ns).namespace
    assert f"{other}_" not in text  # each app has its own registry and namespace


async def test_draining_refuses_new_work(spec: ServiceSpec) -> None:
    app = spec.create_app(retry_after_s=4)
    async with in_process(app) as client:
        app.state.readiness.draining = True
        response = await client.post(spec.path, json=spec.valid_body())
        assert assert_problem(response, 503)["type"] == "/problems/draining"
        assert response.headers["retry-after"] == "4"
        assert_problem(await client.get("/readyz"), 503)
        assert (await client.get("/healthz")).status_code == 200


async def test_openapi_declares_problem_responses(spec: ServiceSpec) -> None:
    async with in_process(spec.create_app(), wait_ready=False) as client:
        schema = (await client.get("/openapi.json")).json()
    responses = schema["paths"][spec.path]["post"]["responses"]
    for status in spec.problem_statuses:
        content = responses[str(status)]["content"]
        assert content[PROBLEM_MEDIA_TYPE]["schema"] == {"$ref": "#/components/schemas/ProblemDetail"}, status
    assert "ProblemDetail" in schema["components"]["schemas"]
    assert "FieldProblem" in schema["components"]["schemas"]
    assert any(s.get("scheme") == "bearer" for s in schema["components"]["securitySchemes"].values())


async def test_wrong_method_is_405_not_500(spec: ServiceSpec) -> None:
    async with in_process(spec.create_app()) as client:
        response = await client.get(spec.path)
    assert_problem(response, 405)
    assert "POST" in response.headers["allow"]

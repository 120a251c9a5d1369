"""The reward API against its own OpenAPI schema, served by a real uvicorn.

schemathesis generates requests (valid and invalid) for every operation and checks that no answer
is a 5xx and that every answer's status, content type, headers and body are the ones the schema
declares (an undeclared status or content type is a failure). Generated bodies almost never hold a
decodable image, so a hypothesis test of our own also sends structurally valid requests mixing
real PNG/JPEG/WebP images with garbage strings.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from motionnft.contracts.images import encode_image, encode_image_bytes
from motionnft.contracts.motion import MOTION_SCORE_PATH, MotionScoreResponse
from services.reward_api.app import create_app
from services.reward_api.settings import RewardApiSettings
from tests.motionnft.flow.known_motion import gaussian_bump
from tests.services.harness import assert_problem, in_thread

TOKEN = "schema-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Every built-in check (no 5xx; status codes, content types, headers and bodies as declared; invalid
# data rejected; auth enforced; 405 with Allow) except one: a body that is valid by the schema but
# whose strings are not images is rightly refused (422), which `positive_data_acceptance` counts as
# a failure. test_valid_shapes_with_real_and_garbage_images_never_5xx covers acceptance instead.
EXCLUDED: list[schemathesis.CheckFunction] = [positive_data_acceptance]
SETTINGS = {
    "max_wait_ms": 1.0, "flow_threads": 1, "dis_preset": "ultrafast", "auth_token": TOKEN,
    "max_image_side": 256, "max_image_pixels": 256 * 256, "max_groups": 4, "max_edits_per_group": 4,
    "max_body_bytes": 2**20,
}  # fmt: skip


# The schema is taken from the very app the server runs (test_served_schema_is_the_tested_one checks
# they agree): schemathesis' lazy `from_fixture` loader does not work with pytest 9, and parametrizing
# needs the schema at collection time, before any server is up.
APP = create_app(RewardApiSettings(**SETTINGS))  # type: ignore[arg-type]
schema = schemathesis.openapi.from_dict(APP.openapi())


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with in_thread(APP) as url:
        yield url


def test_served_schema_is_the_tested_one(base_url: str) -> None:
    assert httpx.get(f"{base_url}/openapi.json").json() == APP.openapi()


@schema.parametrize()
@settings(max_examples=60, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))  # fmt: skip
def test_api_conforms_to_its_schema(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers=AUTH, excluded_checks=EXCLUDED)


# Structurally valid requests with a mix of usable images and garbage.


def _images() -> list[str]:
    scene = gaussian_bump(amplitude=(3.0, -2.0), size=64, margin=8)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    flat = np.full((32, 32, 3), 127, dtype=np.uint8)
    return [
        encode_image(scene.source),
        encode_image(scene.target),
        encode_image(scene.target[:48, :], "JPEG"),
        encode_image(noise, "WEBP"),
        encode_image(flat),  # no texture at all: flows are zero
        encode_image(np.zeros((16, 16, 3), dtype=np.uint8)),  # the smallest side allowed
        "data:image/png;base64," + encode_image(scene.source),
    ]


IMAGES = _images()
PNG = encode_image_bytes(np.zeros((20, 20, 3), dtype=np.uint8))
GARBAGE = [
    "",
    "not base64!",
    "AAAA",
    base64.b64encode(b"GIF89a" + b"\0" * 30).decode(),
    base64.b64encode(PNG[:40]).decode(),  # truncated
    encode_image(np.zeros((8, 8, 3), dtype=np.uint8)),  # too small
    encode_image(np.zeros((16, 300, 3), dtype=np.uint8)),  # too wide
    "data:text/plain,hello",
    IMAGES[0][:-4],  # valid base64 alphabet, cut short
]
any_image = st.one_of(st.sampled_from(IMAGES), st.sampled_from(GARBAGE), st.text(max_size=40))


@st.composite
def request_bodies(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A request in the schema's shape, and whether it is clean (usable images, within every limit)."""
    clean = draw(st.booleans())
    image = st.sampled_from(IMAGES) if clean else any_image
    edits = st.lists(image, min_size=1, max_size=4) if clean else st.lists(image, max_size=5)
    ids = st.one_of(st.none(), st.text(max_size=256 if clean else 300))  # the contract allows 256
    optional: dict[str, st.SearchStrategy[Any]] = {"id": ids}
    if not clean:
        optional["unknown_field"] = st.integers()
    group = st.fixed_dictionaries({"source": image, "target": image, "edits": edits}, optional=optional)
    groups = st.lists(group, min_size=1, max_size=4) if clean else st.lists(group, max_size=5)
    return {"groups": draw(groups)}, clean


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as client:
        yield client


@given(drawn=request_bodies())
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_valid_shapes_with_real_and_garbage_images_never_5xx(
    http: httpx.Client, drawn: tuple[dict[str, Any], bool]
) -> None:
    body, clean = drawn
    response = http.post(MOTION_SCORE_PATH, json=body)
    event(f"clean={clean} status={response.status_code}")
    assert response.status_code < 500, response.text
    if clean:
        assert response.status_code == 200, response.text
    if response.status_code != 200:
        assert 400 <= response.status_code < 500
        assert_problem(response, response.status_code)
        return
    parsed = MotionScoreResponse.model_validate(response.json())
    assert [len(g.scores) for g in parsed.groups] == [len(g["edits"]) for g in body["groups"]]
    assert [g.id for g in parsed.groups] == [g.get("id") for g in body["groups"]]
    for scores in parsed.groups:
        for score in scores.scores:
            assert 0.0 <= score.reward_continuous <= 1.0 and score.reward in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def test_the_positive_test_reaches_scoring(http: httpx.Client) -> None:
    """Guards the test above against only ever producing rejections."""
    body = {"groups": [{"source": IMAGES[0], "target": IMAGES[1], "edits": IMAGES[:4], "id": "x"}]}
    response = http.post(MOTION_SCORE_PATH, json=body)
    assert response.status_code == 200, response.text

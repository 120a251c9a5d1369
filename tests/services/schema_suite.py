"""Schema tests for any service, written once: a service's test_schema.py names its app and the
shapes of its routes' bodies, and takes the fixtures and tests from here.

- `conformance_test`: schemathesis generates requests (valid and invalid) for every operation and
  checks that no answer is a 5xx and that every answer's status, content type, headers and body are
  the ones the schema declares (an undeclared status or content type is a failure).
- `shapes_test`: generated bodies almost never hold a decodable image, so a hypothesis test of our
  own sends structurally valid requests mixing real PNG/JPEG/WebP images with garbage strings: never
  a 5xx, a clean request (usable images, within every limit) always a 200 whose body the route's
  `check` accepts, anything else a 4xx problem.

The schema is taken from the very app the server runs (`served_schema_test` checks they agree):
schemathesis' lazy `from_fixture` loader does not work with pytest 9, and parametrizing needs the
schema at collection time, before any server is up.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from motionnft.contracts.images import encode_image, encode_image_bytes
from tests.motionnft.flow.known_motion import gaussian_bump
from tests.services.harness import assert_problem, in_thread

TOKEN = "schema-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Settings every schema-tested app gets: small limits keep generated requests cheap, and the image
# limits are what make some GARBAGE entries garbage (too small, too wide).
LIMITS: dict[str, Any] = {
    "auth_token": TOKEN, "max_image_side": 256, "max_image_pixels": 256 * 256, "max_groups": 4,
    "max_edits_per_group": 4, "max_body_bytes": 2**20,
}  # fmt: skip
# Every built-in check (no 5xx; status codes, content types, headers and bodies as declared; invalid
# data rejected; auth enforced; 405 with Allow) except one: a body that is valid by the schema but
# whose strings are not images is rightly refused (422), which `positive_data_acceptance` counts as
# a failure. `shapes_test` covers acceptance instead.
EXCLUDED: list[schemathesis.CheckFunction] = [positive_data_acceptance]
# Invalid data may also be refused for its size (413): a list one past its maxItems of large items
# outgrows the body limit before it reaches validation.
_REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": _REJECTIONS}}})


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
        encode_image(flat),  # no texture at all: flows are zero, SSIM degenerate
        encode_image(np.zeros((16, 16, 3), dtype=np.uint8)),  # the smallest side allowed
        "data:image/png;base64," + encode_image(scene.source),
    ]


IMAGES = _images()
_PNG = encode_image_bytes(np.zeros((20, 20, 3), dtype=np.uint8))
GARBAGE = [
    "",
    "not base64!",
    "AAAA",
    base64.b64encode(b"GIF89a" + b"\0" * 30).decode(),
    base64.b64encode(_PNG[:40]).decode(),  # truncated
    encode_image(np.zeros((8, 8, 3), dtype=np.uint8)),  # too small
    encode_image(np.zeros((16, 300, 3), dtype=np.uint8)),  # too wide
    "data:text/plain,hello",
    IMAGES[0][:-4],  # valid base64 alphabet, cut short
]


def images(clean: bool) -> st.SearchStrategy[str]:
    """Usable images only, or a mix of usable images, known garbage and random text."""
    usable = st.sampled_from(IMAGES)
    return usable if clean else st.one_of(usable, st.sampled_from(GARBAGE), st.text(max_size=40))


def ids(clean: bool) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.text(max_size=256 if clean else 300))  # the contracts allow 256


def items(item: st.SearchStrategy[Any], clean: bool, limit: int = 4) -> st.SearchStrategy[list[Any]]:
    """A list within the limit (1 to `limit`) when clean; possibly empty or one over otherwise."""
    return st.lists(item, min_size=1, max_size=limit) if clean else st.lists(item, max_size=limit + 1)


@dataclass(frozen=True)
class ShapedRoute:
    """A POST route, as the shapes test drives it.

    Attributes:
        path: the route.
        bodies: clean -> bodies in the route's shape; clean ones must be answered 200.
        check: (request body, 200 response JSON) -> asserts what the answer must say about the request.
        example: a clean body that must score (guards the test against only ever producing rejections).
    """

    path: str
    bodies: Callable[[bool], st.SearchStrategy[dict[str, Any]]]
    check: Callable[[dict[str, Any], dict[str, Any]], None]
    example: dict[str, Any]


def service_fixtures(app: FastAPI) -> tuple[Any, Any]:
    """Module fixtures `base_url` (the app under uvicorn in a thread) and `http` (a client with the token)."""

    @pytest.fixture(scope="module", name="base_url")
    def base_url() -> Iterator[str]:
        with in_thread(app) as url:
            yield url

    @pytest.fixture(scope="module", name="http")
    def http(base_url: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as client:
            yield client

    return base_url, http


def served_schema_test(app: FastAPI) -> Callable[..., None]:
    def test_served_schema_is_the_tested_one(base_url: str) -> None:
        assert httpx.get(f"{base_url}/openapi.json").json() == app.openapi()

    return test_served_schema_is_the_tested_one


def conformance_test(app: FastAPI, max_examples: int = 60) -> Callable[..., None]:
    """One schemathesis test per operation of the app's schema (every route, probes included)."""
    schema = schemathesis.openapi.from_dict(app.openapi(), config=CONFIG)

    @schema.parametrize()
    @settings(max_examples=max_examples, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def test_api_conforms_to_its_schema(case: schemathesis.Case, base_url: str) -> None:
        case.call_and_validate(base_url=base_url, headers=AUTH, excluded_checks=EXCLUDED)

    return test_api_conforms_to_its_schema


def shapes_test(routes: Sequence[ShapedRoute], max_examples: int = 80) -> Callable[..., None]:
    """Structurally valid requests with a mix of usable images and garbage, on every route: never a 5xx."""

    @given(data=st.data())
    @settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_valid_shapes_with_real_and_garbage_images_never_5xx(http: httpx.Client, data: st.DataObject) -> None:
        route = data.draw(st.sampled_from(routes), label="route")
        clean = data.draw(st.booleans(), label="clean")
        body = data.draw(route.bodies(clean), label="body")
        response = http.post(route.path, json=body)
        event(f"{route.path} clean={clean} status={response.status_code}")
        assert response.status_code < 500, response.text
        if clean:
            assert response.status_code == 200, response.text
        if response.status_code != 200:
            assert 400 <= response.status_code < 500
            assert_problem(response, response.status_code)
            return
        route.check(body, response.json())

    return test_valid_shapes_with_real_and_garbage_images_never_5xx


def examples_test(routes: Sequence[ShapedRoute]) -> Callable[..., None]:
    @pytest.mark.parametrize("route", routes, ids=lambda r: r.path)
    def test_every_route_reaches_scoring(http: httpx.Client, route: ShapedRoute) -> None:
        """Guards the shapes test against only ever producing rejections."""
        response = http.post(route.path, json=route.example)
        assert response.status_code == 200, response.text
        route.check(route.example, response.json())

    return test_every_route_reaches_scoring

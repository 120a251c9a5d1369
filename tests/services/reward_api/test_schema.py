"""The reward API against its own OpenAPI schema, served by a real uvicorn (see schema_suite.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from motionnft.contracts.motion import MOTION_SCORE_PATH, MotionScoreResponse
from services.reward_api.app import create_app
from services.reward_api.settings import RewardApiSettings
from tests.services import schema_suite as suite

APP = create_app(
    RewardApiSettings(**{**suite.LIMITS, "max_wait_ms": 1.0, "flow_threads": 1, "dis_preset": "ultrafast"})
)


def bodies(clean: bool) -> st.SearchStrategy[dict[str, Any]]:
    image = suite.images(clean)
    optional: dict[str, st.SearchStrategy[Any]] = {"id": suite.ids(clean)}
    if not clean:
        optional["unknown_field"] = st.integers()
    group = st.fixed_dictionaries(
        {"source": image, "target": image, "edits": suite.items(image, clean)}, optional=optional
    )
    return st.fixed_dictionaries({"groups": suite.items(group, clean)})


def check(body: dict[str, Any], answer: dict[str, Any]) -> None:
    parsed = MotionScoreResponse.model_validate(answer)
    assert [len(g.scores) for g in parsed.groups] == [len(g["edits"]) for g in body["groups"]]
    assert [g.id for g in parsed.groups] == [g.get("id") for g in body["groups"]]
    for scores in parsed.groups:
        for score in scores.scores:
            assert 0.0 <= score.reward_continuous <= 1.0 and score.reward in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


IMAGES = suite.IMAGES
ROUTES = [
    suite.ShapedRoute(
        MOTION_SCORE_PATH, bodies, check,
        example={"groups": [{"source": IMAGES[0], "target": IMAGES[1], "edits": IMAGES[:4], "id": "x"}]},
    )
]  # fmt: skip

base_url, http = suite.service_fixtures(APP)
test_served_schema_is_the_tested_one = suite.served_schema_test(APP)
test_api_conforms_to_its_schema = suite.conformance_test(APP, max_examples=60)
test_valid_shapes_with_real_and_garbage_images_never_5xx = suite.shapes_test(ROUTES, max_examples=80)
test_every_route_reaches_scoring = suite.examples_test(ROUTES)

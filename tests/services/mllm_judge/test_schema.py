"""The judge (similarity backend) against its own OpenAPI schema, served by a real uvicorn: both
`/v1/judge/score` and `/v1/judge/compare` (see schema_suite.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from motionnft.contracts.judge import JUDGE_COMPARE_PATH, JUDGE_SCORE_PATH, CompareResponse, JudgeScoreResponse
from services.mllm_judge.app import create_app
from services.mllm_judge.rubrics import COMPARE, RUBRICS
from services.mllm_judge.settings import MllmJudgeSettings
from tests.services import schema_suite as suite

TIE_MARGIN = 0.05
APP = create_app(MllmJudgeSettings(**{**suite.LIMITS, "backend": "similarity", "max_pairs": 4,
                                      "max_instruction_chars": 200, "tie_margin": TIE_MARGIN}))  # fmt: skip


def instructions(clean: bool) -> st.SearchStrategy[str]:
    if clean:
        return st.text(min_size=1, max_size=200).filter(lambda s: bool(s.strip()))
    return st.one_of(st.text(max_size=220), st.sampled_from(["", " ", "\t\n", "x" * 201]))


def _group_or_pair(clean: bool, images: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """The similarity backend needs the target: clean ones always carry it, others may not."""
    image = suite.images(clean)
    required: dict[str, st.SearchStrategy[Any]] = {"instruction": instructions(clean), "source": image, **images}
    optional: dict[str, st.SearchStrategy[Any]] = {"id": suite.ids(clean)}
    if clean:
        required["target"] = image
    else:
        optional |= {"target": st.one_of(image, st.none()), "unknown_field": st.integers()}
    return st.fixed_dictionaries(required, optional=optional)


def score_bodies(clean: bool) -> st.SearchStrategy[dict[str, Any]]:
    image = suite.images(clean)
    group = _group_or_pair(clean, {"edits": suite.items(image, clean)})
    rubric = st.sampled_from(list(RUBRICS))
    rubrics = (
        st.lists(rubric, min_size=1, max_size=5)
        if clean
        else st.lists(st.one_of(rubric, st.text(max_size=12)), max_size=5)
    )
    return st.fixed_dictionaries({"groups": suite.items(group, clean)}, optional={"rubrics": rubrics})


def compare_bodies(clean: bool) -> st.SearchStrategy[dict[str, Any]]:
    image = suite.images(clean)
    pair = _group_or_pair(clean, {"a": image, "b": image})
    return st.fixed_dictionaries({"pairs": suite.items(pair, clean)})


def check_score(body: dict[str, Any], answer: dict[str, Any]) -> None:
    parsed = JudgeScoreResponse.model_validate(answer)
    assert parsed.backend == "similarity" and parsed.is_language_model is False
    rubrics = list(dict.fromkeys(body.get("rubrics", ["edit"])))
    assert parsed.rubrics == {name: RUBRICS[name].version for name in rubrics}
    assert [len(g.scores) for g in parsed.groups] == [len(g["edits"]) for g in body["groups"]]
    assert [g.id for g in parsed.groups] == [g.get("id") for g in body["groups"]]
    for group in parsed.groups:
        for edit in group.scores:
            assert list(edit) == rubrics
            for score in edit.values():  # the similarity backend always answers when there is a target
                assert score.score is not None and score.raw is not None and score.levels is not None
                assert 0.0 <= score.score <= 1.0 and abs(score.raw - 5 * score.score) < 1e-9
                assert abs(sum(score.levels) - 1.0) < 1e-9 and len(score.levels) == 6


def check_compare(body: dict[str, Any], answer: dict[str, Any]) -> None:
    parsed = CompareResponse.model_validate(answer)
    assert parsed.backend == "similarity" and parsed.is_language_model is False
    assert parsed.rubric == COMPARE.version and parsed.tie_margin == TIE_MARGIN
    assert [p.id for p in parsed.pairs] == [p.get("id") for p in body["pairs"]]
    for result, pair in zip(parsed.pairs, body["pairs"], strict=True):
        assert result.prob_a is not None and 0.0 <= result.prob_a <= 1.0
        expected = "tie" if abs(result.prob_a - 0.5) <= TIE_MARGIN else ("a" if result.prob_a > 0.5 else "b")
        assert result.verdict == expected
        if pair["a"] == pair["b"]:
            assert result.verdict == "tie"


IMAGES = suite.IMAGES
ROUTES = [
    suite.ShapedRoute(
        JUDGE_SCORE_PATH, score_bodies, check_score,
        example={"groups": [{"instruction": "raise the arm", "source": IMAGES[0], "target": IMAGES[1],
                             "edits": IMAGES[:4], "id": "x"}], "rubrics": ["edit", "coherence"]},
    ),
    suite.ShapedRoute(
        JUDGE_COMPARE_PATH, compare_bodies, check_compare,
        example={"pairs": [{"instruction": "raise the arm", "source": IMAGES[0], "target": IMAGES[1],
                            "a": IMAGES[1], "b": IMAGES[3], "id": "p"}]},
    ),
]  # fmt: skip

base_url, http = suite.service_fixtures(APP)
test_served_schema_is_the_tested_one = suite.served_schema_test(APP)
test_api_conforms_to_its_schema = suite.conformance_test(APP, max_examples=60)
test_valid_shapes_with_real_and_garbage_images_never_5xx = suite.shapes_test(ROUTES, max_examples=200)
test_every_route_reaches_scoring = suite.examples_test(ROUTES)

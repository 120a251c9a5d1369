"""The judge service in-process, what is its own: the shape and meaning of scores, rubrics, the
similarity backend's needs, and comparisons (symmetric, position bias removed, ties). The answer
cache and failures are in test_answers.py; the edge it shares with the reward API (bad input, auth,
limits, metrics, request ids, draining) is in tests/services/test_contract.py."""

from __future__ import annotations

import math
from typing import Any

import pytest

from motionnft.contracts.images import encode_image
from motionnft.contracts.judge import JUDGE_COMPARE_PATH, JUDGE_SCORE_PATH, CompareResponse, JudgeScoreResponse
from services.mllm_judge.backends.base import Answer, JudgeFailure, JudgeQuestion
from services.mllm_judge.backends.similarity import SimilarityJudge, similarity
from services.mllm_judge.rubrics import COMPARE, CURATION_RUBRICS, RUBRICS
from tests.services.contract import judge_app
from tests.services.harness import assert_problem, in_process
from tests.services.mllm_judge.judge_doubles import (
    INSTRUCTION,
    Counting,
    Pictures,
    Scripted,
    grey,
    pair,
    score_body,
    with_backend,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def pics() -> Pictures:
    return Pictures()


# Scores.


async def test_scores_one_entry_per_edit_in_order_keyed_by_rubric(pics: Pictures) -> None:
    request = score_body(pics)
    request["groups"][0]["id"] = "g-0"
    request["groups"].append({**request["groups"][0], "id": "g-1", "edits": [pics[pics.edits[2]]]})
    async with in_process(judge_app()) as client:
        response = await client.post(JUDGE_SCORE_PATH, json=request)
    assert response.status_code == 200, response.text
    parsed = JudgeScoreResponse.model_validate(response.json())
    assert [g.id for g in parsed.groups] == ["g-0", "g-1"]
    assert [len(g.scores) for g in parsed.groups] == [4, 1]
    assert parsed.rubrics == {"edit": RUBRICS["edit"].version}
    raws = []
    for group, edits in zip(parsed.groups, [pics.edits, [pics.edits[2]]], strict=True):
        for entry, edit in zip(group.scores, edits, strict=True):
            assert list(entry) == ["edit"]
            s = entry["edit"]
            assert s.score is not None and s.raw is not None and s.levels is not None and s.error is None
            assert 0.0 <= s.score <= 1.0 and 0.0 <= s.raw <= 5.0
            assert len(s.levels) == 6 and math.isclose(sum(s.levels), 1.0, abs_tol=1e-9)
            assert math.isclose(s.raw, sum(k * p for k, p in enumerate(s.levels)), abs_tol=1e-9)
            assert math.isclose(s.score, s.raw / 5, abs_tol=1e-12)
            # In request order: each entry is its own edit's similarity to the target.
            assert math.isclose(s.raw, 5 * max(similarity(edit, pics.target), 0.0), abs_tol=1e-9)
            raws.append(s.raw)
    assert raws[0] == 5.0 and raws[:4] == sorted(raws[:4], reverse=True) and raws[4] == raws[2]


async def test_several_rubrics_at_once(pics: Pictures) -> None:
    names = ["coherence", "edit", "fidelity", "edit", "preservation"]
    backend = Counting(SimilarityJudge())
    async with in_process(with_backend(backend)) as client:
        response = await client.post(JUDGE_SCORE_PATH, json=score_body(pics, pics.edits[:2], rubrics=names))
    assert response.status_code == 200, response.text
    parsed = JudgeScoreResponse.model_validate(response.json())
    unique = ["coherence", "edit", "fidelity", "preservation"]  # repeats asked once, first order kept
    assert parsed.rubrics == {n: RUBRICS[n].version for n in unique}
    for entry in parsed.groups[0].scores:
        assert list(entry) == unique
    assert len(backend.questions) == 2 * 4
    edit_prompts = {q.prompt for q in backend.questions if q.rubric == "edit"}
    assert edit_prompts == {RUBRICS["edit"].render(INSTRUCTION)}
    assert {q.rubric_version for q in backend.questions} == {RUBRICS[n].version for n in unique}


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"rubrics": ["edit", "action"]}, "rubrics[1]"),
        ({"rubrics": []}, "rubrics"),
        ({"instruction": "   \n\t"}, "groups[0].instruction"),
        ({"instruction": ""}, "groups[0].instruction"),
        ({"instruction": "x" * 2001}, "groups[0].instruction"),
        ({"target": None}, "groups[0].target"),
    ],
    ids=["unknown-rubric", "no-rubrics", "blank-instruction", "empty-instruction", "long-instruction",
         "no-target-for-similarity"],
)  # fmt: skip
async def test_refused_score_requests_name_the_field(pics: Pictures, change: dict[str, Any], loc: str) -> None:
    request = score_body(pics)
    if "rubrics" in change:
        request.update(change)
    else:
        request["groups"][0].update(change)
        if change.get("target", "") is None:
            del request["groups"][0]["target"]
    async with in_process(judge_app()) as client:
        problem = assert_problem(await client.post(JUDGE_SCORE_PATH, json=request), 422, loc)
    assert [e["loc"] for e in problem["errors"]] == [loc]


async def test_problems_across_groups_come_in_one_answer(pics: Pictures) -> None:
    request = score_body(pics, rubrics=["edit", "nope"])
    request["groups"].append({**request["groups"][0], "instruction": " "})
    del request["groups"][1]["target"]
    async with in_process(judge_app()) as client:
        problem = assert_problem(await client.post(JUDGE_SCORE_PATH, json=request), 422)
    assert {e["loc"] for e in problem["errors"]} == {"rubrics[1]", "groups[1].instruction", "groups[1].target"}


async def test_a_language_model_backend_does_not_need_the_target(pics: Pictures) -> None:
    backend = Scripted(lambda q: [0.0, 0.0, 0.0, 0.5, 0.5, 0.0] if q.target is None else JudgeFailure("saw target"))
    request = score_body(pics)
    del request["groups"][0]["target"]
    async with in_process(with_backend(backend)) as client:
        response = await client.post(JUDGE_SCORE_PATH, json=request)
    assert response.status_code == 200, response.text
    assert all(e["edit"]["raw"] == 3.5 for e in response.json()["groups"][0]["scores"])
    assert response.json()["is_language_model"] is True and response.json()["backend"] == "scripted"


async def test_every_answer_says_it_is_not_a_language_model(pics: Pictures) -> None:
    async with in_process(judge_app()) as client:
        ready = (await client.get("/readyz")).json()
        scored = (await client.post(JUDGE_SCORE_PATH, json=score_body(pics))).json()
        compared = (await client.post(JUDGE_COMPARE_PATH, json={"pairs": [pair(pics, *pics.edits[:2])]})).json()
    for answer in (ready, scored, compared):
        assert answer["is_language_model"] is False
        assert answer["backend"] == "similarity"
        assert "not a language model" in answer["model"]
    assert "NOT a language model" in ready["note"]
    assert ready["rubrics"] == {r.name: r.version for r in (*RUBRICS.values(), COMPARE, *CURATION_RUBRICS.values())}
    assert compared["rubric"] == COMPARE.version


# Comparisons.


async def test_compare_is_symmetric(pics: Pictures) -> None:
    better, worse = pics.edits[1], pics.edits[3]
    request = {"pairs": [pair(pics, better, worse, id="ab"), pair(pics, worse, better, id="ba")]}
    async with in_process(judge_app()) as client:
        response = await client.post(JUDGE_COMPARE_PATH, json=request)
        alone = await client.post(JUDGE_COMPARE_PATH, json={"pairs": [pair(pics, worse, better)]})
    assert response.status_code == 200, response.text
    parsed = CompareResponse.model_validate(response.json())
    ab, ba = parsed.pairs
    assert (ab.id, ba.id) == ("ab", "ba")
    assert ab.prob_a is not None and ba.prob_a is not None
    assert math.isclose(ba.prob_a, 1 - ab.prob_a, abs_tol=1e-9)
    assert (ab.verdict, ba.verdict) == ("a", "b")
    assert alone.json()["pairs"][0]["prob_a"] == ba.prob_a  # the same question, asked on its own


def position_biased(q: JudgeQuestion) -> Answer:
    """Prefers the brighter edit, and whatever is shown first by 0.15 more: P("A") = 0.65 + 0.3 tanh(gap / 20)."""
    gap = float(q.images[1].mean()) - float(q.images[2].mean())
    p_first = 0.65 + 0.3 * math.tanh(gap / 20)
    return [p_first, 1 - p_first]


@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [(140, 100, "a"), (100, 140, "b"), (103, 100, "tie"), (100, 103, "tie"), (120, 120, "tie")],
)
async def test_compare_removes_position_bias(a: int, b: int, verdict: str) -> None:
    images = {"a": encode_image(grey(a)), "b": encode_image(grey(b))}
    base = {"instruction": INSTRUCTION, "source": encode_image(grey(0))}
    request = {"pairs": [{**base, **images}, {**base, "a": images["b"], "b": images["a"]}]}
    async with in_process(with_backend(Scripted(position_biased), tie_margin=0.05)) as client:
        response = await client.post(JUDGE_COMPARE_PATH, json=request)
    assert response.status_code == 200, response.text
    forward, backward = response.json()["pairs"]
    # (0.65 + 0.3 t + 1 - (0.65 - 0.3 t)) / 2 = 0.5 + 0.3 t: the 0.15 first-position bonus cancels.
    assert math.isclose(forward["prob_a"], 0.5 + 0.3 * math.tanh((a - b) / 20), abs_tol=1e-9)
    assert math.isclose(backward["prob_a"], 1 - forward["prob_a"], abs_tol=1e-9)
    assert forward["verdict"] == verdict
    assert backward["verdict"] == {"a": "b", "b": "a", "tie": "tie"}[verdict]


async def test_identical_edits_tie(pics: Pictures) -> None:
    async with in_process(judge_app(tie_margin=0.0)) as client:
        response = await client.post(JUDGE_COMPARE_PATH, json={"pairs": [pair(pics, *[pics.edits[2]] * 2)]})
    result = response.json()["pairs"][0]
    assert result == {"prob_a": 0.5, "verdict": "tie"}
    assert response.json()["tie_margin"] == 0.0


async def test_compare_refusals_name_the_field(pics: Pictures) -> None:
    no_target = pair(pics, *pics.edits[:2])
    del no_target["target"]
    bad_b = pair(pics, pics.edits[0], pics.edits[1], instruction=" ")
    bad_b["b"] = "not an image"
    async with in_process(judge_app(max_pairs=2)) as client:
        missing = assert_problem(await client.post(JUDGE_COMPARE_PATH, json={"pairs": [no_target]}), 422)
        too_many = await client.post(JUDGE_COMPARE_PATH, json={"pairs": [pair(pics, *pics.edits[:2])] * 3})
        none = await client.post(JUDGE_COMPARE_PATH, json={"pairs": []})
        blank = await client.post(JUDGE_COMPARE_PATH, json={"pairs": [bad_b]})
        image = await client.post(JUDGE_COMPARE_PATH, json={"pairs": [{**bad_b, "instruction": "x"}]})
    assert [e["loc"] for e in missing["errors"]] == ["pairs[0].target"]
    assert_problem(too_many, 422, "pairs")
    assert_problem(none, 422, "pairs")
    assert_problem(blank, 422, "pairs[0].instruction")
    assert [e["loc"] for e in assert_problem(image, 422)["errors"]] == ["pairs[0].b"]


async def test_compare_needs_the_token_too(pics: Pictures) -> None:
    request = {"pairs": [pair(pics, *pics.edits[:2])]}
    async with in_process(judge_app(auth_token="s3cret")) as client:
        assert_problem(await client.post(JUDGE_COMPARE_PATH, json=request), 401)
        right = await client.post(JUDGE_COMPARE_PATH, json=request, headers={"Authorization": "Bearer s3cret"})
    assert right.status_code == 200, right.text

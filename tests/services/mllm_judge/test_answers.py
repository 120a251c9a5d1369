"""The judge service in-process: identical questions answered from the cache, items the backend
could not answer (an error and no number, 502 when none could), overload and a failed load."""

from __future__ import annotations

import asyncio
import json

import pytest

from motionnft.contracts.images import encode_image
from motionnft.contracts.judge import JUDGE_COMPARE_PATH, JUDGE_SCORE_PATH
from services.mllm_judge.backends.base import Answer, JudgeFailure, JudgeQuestion
from services.mllm_judge.backends.similarity import SimilarityJudge
from services.serving.batching import Overloaded
from tests.services.harness import assert_problem, in_process
from tests.services.mllm_judge.judge_doubles import (
    INSTRUCTION,
    Counting,
    Pictures,
    Scripted,
    grey,
    metric,
    pair,
    score_body,
    with_backend,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def pics() -> Pictures:
    return Pictures()


# The answer cache.


async def test_identical_questions_are_answered_from_the_cache(pics: Pictures) -> None:
    backend = Counting(SimilarityJudge())
    request = score_body(pics, rubrics=["edit", "coherence"])
    compare = {"pairs": [pair(pics, *pics.edits[:2])]}
    async with in_process(with_backend(backend)) as client:
        first = await client.post(JUDGE_SCORE_PATH, json=request)
        hits_before = metric((await client.get("/metrics")).text, "mllm_judge_answer_cache_hits_total")
        second = await client.post(JUDGE_SCORE_PATH, json=request)
        metrics = (await client.get("/metrics")).text
        assert (backend.calls, len(backend.questions)) == (1, 8)  # 4 edits x 2 rubrics, asked once
        # Another instruction or rubric is another question.
        await client.post(JUDGE_SCORE_PATH, json={**request, "rubrics": ["edit", "fidelity"]})
        assert (backend.calls, len(backend.questions)) == (2, 12)
        changed = score_body(pics, rubrics=["edit"])
        changed["groups"][0]["instruction"] = "Make the man lower his left arm"
        await client.post(JUDGE_SCORE_PATH, json=changed)
        assert len(backend.questions) == 16
        # A comparison's two orders are two questions; asked again, none reaches the backend.
        await client.post(JUDGE_COMPARE_PATH, json=compare)
        again = await client.post(JUDGE_COMPARE_PATH, json=compare)
        assert len(backend.questions) == 18 and backend.calls == 4
    assert first.json() == second.json()
    assert hits_before == 0.0
    assert metric(metrics, "mllm_judge_answer_cache_hits_total") == 8.0
    assert metric(metrics, "mllm_judge_questions_total") == 8.0
    assert again.status_code == 200


async def test_no_cache_when_disabled(pics: Pictures) -> None:
    backend = Counting(SimilarityJudge())
    async with in_process(with_backend(backend, cache_mb=0)) as client:
        for _ in range(2):
            assert (await client.post(JUDGE_SCORE_PATH, json=score_body(pics))).status_code == 200
    assert backend.calls == 2 and len(backend.questions) == 8


# Failures.


def fails_on_black(q: JudgeQuestion) -> Answer:
    """Fails every question whose edit is black; rates the others by brightness: level = mean // 51."""
    edit = q.images[1]
    if not edit.any():
        return JudgeFailure("upstream answered with no choice token")
    levels = [0.0] * 6
    levels[int(edit.mean()) // 51] = 1.0
    return levels


async def test_failed_items_carry_an_error_and_no_number() -> None:
    values = [0, 255, 0, 102]
    group = {
        "instruction": INSTRUCTION,
        "source": encode_image(grey(50)),
        "edits": [encode_image(grey(v)) for v in values],
    }
    request = {"groups": [group], "rubrics": ["edit", "coherence"]}
    backend = Counting(Scripted(fails_on_black))
    async with in_process(with_backend(backend)) as client:
        response = await client.post(JUDGE_SCORE_PATH, json=request)
        retried = await client.post(JUDGE_SCORE_PATH, json=request)
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 200, response.text
    raw = json.loads(response.content)  # the JSON as sent, not a model's view of it
    scores = raw["groups"][0]["scores"]
    for value, entry in zip(values, scores, strict=True):
        for item in entry.values():
            if value == 0:
                assert item == {"error": "upstream answered with no choice token"}
            else:
                assert set(item) == {"score", "raw", "levels"}
                assert item["raw"] == value // 51
    assert '"score": null' not in response.text and '"score":null' not in response.text
    assert retried.json() == raw
    # Failures are never cached: the two black edits x two rubrics are asked again, the rest are not.
    assert len(backend.questions) == 8 + 4
    assert metric(metrics, "mllm_judge_question_failures_total") == 8.0


async def test_every_item_failing_is_a_502(pics: Pictures) -> None:
    backend = Scripted(lambda q: JudgeFailure("upstream 500 after 3 attempts"))
    async with in_process(with_backend(backend)) as client:
        scored = await client.post(JUDGE_SCORE_PATH, json=score_body(pics))
        compared = await client.post(JUDGE_COMPARE_PATH, json={"pairs": [pair(pics, *pics.edits[:2])]})
    for response in (scored, compared):
        problem = assert_problem(response, 502)
        assert problem["type"] == "/problems/judge-failed"
        assert problem["detail"] == "upstream 500 after 3 attempts"


async def test_a_failed_comparison_order_fails_the_pair_alone() -> None:
    def respond(q: JudgeQuestion) -> Answer:
        return JudgeFailure("timeout") if q.images[1].mean() == 0 else [0.7, 0.3]

    base = {"instruction": INSTRUCTION, "source": encode_image(grey(50))}
    request = {"pairs": [{**base, "a": encode_image(grey(0)), "b": encode_image(grey(9)), "id": "broken"},
                         {**base, "a": encode_image(grey(200)), "b": encode_image(grey(9)), "id": "fine"}]}  # fmt: skip
    async with in_process(with_backend(Scripted(respond))) as client:
        response = await client.post(JUDGE_COMPARE_PATH, json=request)
    assert response.status_code == 200, response.text
    broken, fine = json.loads(response.content)["pairs"]
    assert broken == {"id": "broken", "error": "timeout"}  # one order failed: no half-debiased number
    assert fine == {"id": "fine", "prob_a": 0.5, "verdict": "tie"}  # 0.7 for A either way: pure bias


async def test_overloaded_backend_is_a_503_with_retry_after(pics: Pictures) -> None:
    def respond(q: JudgeQuestion) -> Answer:
        raise Overloaded("judge queue is full (1024 queued)")

    async with in_process(with_backend(Scripted(respond), retry_after_s=7)) as client:
        scored = await client.post(JUDGE_SCORE_PATH, json=score_body(pics))
        compared = await client.post(JUDGE_COMPARE_PATH, json={"pairs": [pair(pics, *pics.edits[:2])]})
        assert (await client.get("/readyz")).status_code == 200  # overload is not unreadiness
    for response in (scored, compared):
        problem = assert_problem(response, 503)
        assert problem["type"] == "/problems/overloaded"
        assert response.headers["retry-after"] == "7"


async def test_not_ready_until_loaded_and_failure_is_reported(pics: Pictures) -> None:
    backend = Scripted(lambda q: [1.0, 0, 0, 0, 0, 0], load_error=FileNotFoundError("/models/judge: no weights"))
    app = with_backend(backend)
    async with in_process(app, wait_ready=False) as client:
        for _ in range(200):
            if app.state.readiness.error:
                break
            await asyncio.sleep(0.01)
        ready = assert_problem(await client.get("/readyz"), 503)
        assert "no weights" in ready["detail"]
        response = await client.post(JUDGE_SCORE_PATH, json=score_body(pics))
        assert_problem(response, 503)
        assert "retry-after" in response.headers
        assert (await client.get("/healthz")).status_code == 200

"""`POST /v1/judge/curate` end to end: the real app with the openai backend against the fake upstream
over loopback, the upstream answering like a judge that looks at the images (`responder`), and the
similarity backend's refusal. Expected numbers are computed by hand from the logprobs the fake sends."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from benchmarks.fake_upstream import (
    DEFAULT_MODEL,
    Behaviour,
    ChatCompletionsUpstream,
    answer,
    error,
    logprobs_from_levels,
    running_upstream,
)
from motionnft.contracts.images import encode_image
from motionnft.contracts.judge import CURATION_CRITERIA, JUDGE_CURATE_PATH, MOTION_CATEGORIES, CurateResponse
from motionnft.judge_scores import CATEGORY_CHOICES
from services.mllm_judge.app import create_app
from services.mllm_judge.backends.base import JudgeFailure, JudgeQuestion
from services.mllm_judge.backends.similarity import SimilarityJudge
from services.mllm_judge.curation import rubric_versions
from services.mllm_judge.rubrics import CATEGORY, CURATION_RUBRICS, SUMMARY
from services.mllm_judge.settings import MllmJudgeSettings
from tests.services.contract import judge_app
from tests.services.harness import assert_problem, in_process
from tests.services.mllm_judge.judge_doubles import metric

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SUMMARY_TEXT = "The woman turns her head toward the dog."
YES, NO = -0.1, -2.3  # first-token logprobs of a confident "Yes"
P_YES = math.exp(YES) / (math.exp(YES) + math.exp(NO))
CATEGORY_LEVELS = [0.05, 0.1, 0.05, 0.6, 0.15, 0.05]  # "orientation" most likely


def judge_like(body: Any) -> Behaviour | None:
    """Answers like a judge that looks at the frames: no motion when they are identical, else Yes."""
    content = body["messages"][0]["content"]
    prompt, frames = content[-1]["text"], [c["image_url"]["url"] for c in content[:-1]]
    if prompt.endswith("Answer Yes or No."):
        still = "meaningful motion change" in prompt and frames[0] == frames[1]
        return answer({"Yes": NO, "No": YES} if still else {"Yes": YES, "No": NO})
    if prompt == CATEGORY.template:
        return answer(logprobs_from_levels(CATEGORY_LEVELS, CATEGORY_CHOICES, extra={"The": math.log(0.01)}))
    return None  # the summary: the upstream's default text


@pytest.fixture(scope="module")
def live() -> Iterator[ChatCompletionsUpstream]:
    fake = ChatCompletionsUpstream(responder=judge_like, default_text=f"  {SUMMARY_TEXT}\n")
    with running_upstream(fake):
        yield fake


@pytest.fixture
def upstream(live: ChatCompletionsUpstream) -> ChatCompletionsUpstream:
    live.reset()
    live.responder = judge_like  # a test may change it
    return live


def judge(upstream: ChatCompletionsUpstream, **settings: Any):
    return create_app(MllmJudgeSettings(backend="openai", openai_base_url=upstream.base_url,
                                        openai_model=DEFAULT_MODEL, openai_max_attempts=1, **settings))  # fmt: skip


def frame(seed: int) -> str:
    return encode_image(np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8))


def window(seed: int, still: bool = False, **extra: Any) -> dict[str, Any]:
    return {"first": frame(seed), "last": frame(seed if still else seed + 1), **extra}


def questions_by_kind(upstream: ChatCompletionsUpstream) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {"text": [], "logprobs": []}
    for request in upstream.completions:
        kinds["logprobs" if request.body.get("logprobs") else "text"].append(request.body)
    return kinds


async def test_criteria_category_and_summary_come_from_the_upstream(upstream: ChatCompletionsUpstream) -> None:
    body = {"items": [window(0, id="moving"), window(2, still=True, id="still")]}
    async with in_process(judge(upstream)) as client:
        response = await client.post(JUDGE_CURATE_PATH, json=body)
    assert response.status_code == 200, response.text
    parsed = CurateResponse.model_validate(response.json())
    assert (parsed.backend, parsed.model, parsed.is_language_model) == ("openai", DEFAULT_MODEL, True)
    assert parsed.rubrics == rubric_versions(True) == {r.name: r.version for r in CURATION_RUBRICS.values()}
    moving, still = parsed.items
    assert (moving.id, still.id) == ("moving", "still")
    for item in parsed.items:
        assert list(item.criteria) == list(CURATION_CRITERIA)
        for name, score in item.criteria.items():
            expected = 1 - P_YES if (item.id, name) == ("still", "motion") else P_YES
            assert score.score == pytest.approx(expected, abs=1e-12) and score.raw == score.score
            assert score.levels == pytest.approx([expected, 1 - expected], abs=1e-12)
        # "The" is no category number: the distribution is renormalised over 1..6.
        assert item.category.category == "orientation"
        assert item.category.probs == pytest.approx(dict(zip(MOTION_CATEGORIES, CATEGORY_LEVELS, strict=True)))
        assert item.summary is not None and item.summary.text == SUMMARY_TEXT  # stripped
    kinds = questions_by_kind(upstream)
    assert len(kinds["logprobs"]) == 2 * 5 and all(q["max_tokens"] == 1 for q in kinds["logprobs"])
    assert len(kinds["text"]) == 2
    for text in kinds["text"]:
        assert text["max_tokens"] == 64 and text["temperature"] == 0 and "top_logprobs" not in text
        content = text["messages"][0]["content"]
        assert content[2:] == [{"type": "text", "text": SUMMARY.template}]
    # Each window's frames, first then last, as the client sent them.
    sent = sorted([c["image_url"]["url"] for c in q["messages"][0]["content"][:2]] for q in kinds["text"])
    given = sorted([f"data:image/png;base64,{item[k]}" for k in ("first", "last")] for item in body["items"])
    assert sent == given


async def test_a_failed_upstream_fails_that_window_only(upstream: ChatCompletionsUpstream) -> None:
    broken, fine = window(10), window(12)
    # The responder leaves the broken window's questions to the script, which fails them all.
    upstream.responder = lambda body: None if broken["last"] in str(body) else judge_like(body)
    upstream.script(marker=broken["last"][-48:], then=error(400, message="bad frame"))
    async with in_process(judge(upstream)) as client:
        response = await client.post(JUDGE_CURATE_PATH, json={"items": [broken, fine]})
    assert response.status_code == 200, response.text
    failed, answered = response.json()["items"]
    assert all(set(score) == {"error"} and "bad frame" in score["error"] for score in failed["criteria"].values())
    assert set(failed["category"]) == {"error"} and set(failed["summary"]) == {"error"}
    assert all(score["score"] == pytest.approx(P_YES) for score in answered["criteria"].values())
    assert answered["category"]["category"] == "orientation" and answered["summary"] == {"text": SUMMARY_TEXT}


async def test_every_question_failed_is_a_502(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(then=error(400))
    upstream.responder = None
    async with in_process(judge(upstream)) as client:
        assert_problem(await client.post(JUDGE_CURATE_PATH, json={"items": [window(20)]}), 502)
    assert len(upstream.completions) == 6


async def test_repeated_windows_are_answered_from_the_cache(upstream: ChatCompletionsUpstream) -> None:
    body = {"items": [window(30)]}
    async with in_process(judge(upstream)) as client:
        first = await client.post(JUDGE_CURATE_PATH, json=body)
        asked = len(upstream.completions)
        hits = metric((await client.get("/metrics")).text, "mllm_judge_answer_cache_hits_total")
        again = await client.post(JUDGE_CURATE_PATH, json=body)
        assert metric((await client.get("/metrics")).text, "mllm_judge_answer_cache_hits_total") == hits + 6
    assert asked == 6 and len(upstream.completions) == asked  # nothing new reached the upstream
    assert again.json() == first.json()


async def test_no_summary_asks_no_describe_question(upstream: ChatCompletionsUpstream) -> None:
    async with in_process(judge(upstream)) as client:
        response = await client.post(JUDGE_CURATE_PATH, json={"items": [window(40)], "summary": False})
    assert response.status_code == 200, response.text
    assert "summary" not in response.json()["items"][0]
    assert response.json()["rubrics"] == rubric_versions(False) and SUMMARY.name not in rubric_versions(False)
    kinds = questions_by_kind(upstream)
    assert (len(kinds["logprobs"]), len(kinds["text"])) == (5, 0)


@pytest.mark.parametrize(
    ("items", "loc"),
    [([{"first": "not base64!", "last": frame(0)}], "items[0].first"), ([window(1)] * 3, "items"), ([], "items")],
    ids=["bad-image", "too-many", "none"],
)
async def test_refused_requests_name_the_field(upstream: ChatCompletionsUpstream, items: list, loc: str) -> None:
    async with in_process(judge(upstream, max_curate_items=2)) as client:
        problem = assert_problem(await client.post(JUDGE_CURATE_PATH, json={"items": items}), 422, loc)
    assert [e["loc"] for e in problem["errors"]] == [loc]
    assert upstream.completions == []


async def test_the_similarity_backend_refuses_to_curate() -> None:
    # Undecodable frames too: the refusal comes before any image is looked at.
    for items in ([window(0)], [{"first": "not base64!", "last": "neither"}]):
        async with in_process(judge_app()) as client:
            problem = assert_problem(await client.post(JUDGE_CURATE_PATH, json={"items": items}), 422)
        assert problem["type"].endswith("/not-a-language-model")
        assert "similarity backend is not a language model and cannot judge curation criteria" in problem["detail"]


async def test_the_similarity_backend_never_makes_up_an_answer() -> None:
    image = np.zeros((16, 16, 3), np.uint8)
    question = JudgeQuestion("describe", SUMMARY.name, SUMMARY.version, SUMMARY.template, (image, image), ())
    told = await SimilarityJudge().describe([question, question], 16)
    yesno = JudgeQuestion("yesno", "curation/stable", "v", "?", (image, image), ("Yes", "No"), target=image)
    assert all(isinstance(t, JudgeFailure) for t in [*told, *await SimilarityJudge().answer([yesno])])


async def test_the_score_route_does_not_accept_curation_rubrics() -> None:
    group = {"instruction": "Raise the arm", "source": frame(0), "target": frame(1), "edits": [frame(2)]}
    async with in_process(judge_app()) as client:
        response = await client.post("/v1/judge/score", json={"groups": [group], "rubrics": ["curation/stable"]})
    assert_problem(response, 422, "rubrics[0]")

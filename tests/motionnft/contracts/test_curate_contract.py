"""The curation wire contract (motionnft/contracts/judge.py): a result carries numbers or an error,
never both and never neither; requests forbid unknown fields; one list of categories in the project;
and JudgeClient.curate against a scripted server, refusing an answer whose windows do not line up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from motionnft.contracts.client import InvalidResponseError, JudgeClient, RetryPolicy
from motionnft.contracts.judge import (
    CURATION_CRITERIA,
    JUDGE_CURATE_PATH,
    MOTION_CATEGORIES,
    CategoryGuess,
    CurateItem,
    CurateRequest,
    CurateResult,
    MotionSummary,
    RubricScore,
)
from motionnft.contracts.limits import MAX_GROUPS
from motionnft.data.synth import CATEGORIES
from tests.motionnft.contracts.fake_servers import Reply, ScriptedServer, running

IMG = "aGVsbG8="  # the client never decodes images
PROBS = dict(zip(MOTION_CATEGORIES, [0.5, 0.1, 0.1, 0.1, 0.1, 0.1], strict=True))


def test_one_list_of_categories_and_criteria() -> None:
    assert CATEGORIES is MOTION_CATEGORIES
    assert MOTION_CATEGORIES == ("pose", "locomotion", "object_state", "orientation", "subject_object", "inter_subject")
    assert CURATION_CRITERIA == ("stable", "motion", "intact", "quality")


@pytest.mark.parametrize(
    "fields",
    [{}, {"category": "pose"}, {"probs": PROBS}, {"category": "pose", "probs": PROBS, "error": "x"},
     {"category": "dance", "probs": PROBS}],
    ids=["nothing", "no-probs", "no-category", "both", "category-not-in-probs"],
)  # fmt: skip
def test_a_category_guess_is_a_guess_or_an_error(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CategoryGuess(**fields)


def test_valid_guesses_and_summaries() -> None:
    assert CategoryGuess(category="pose", probs=PROBS).category == "pose"
    assert CategoryGuess(error="upstream down").probs is None
    assert MotionSummary(text="The dog sits.").error is None and MotionSummary(error="empty").text is None
    for fields in ({}, {"text": "a", "error": "b"}):
        with pytest.raises(ValidationError):
            MotionSummary(**fields)


def test_requests_forbid_unknown_fields_and_bound_their_size() -> None:
    assert CurateRequest(items=[CurateItem(first=IMG, last=IMG)]).summary is True
    with pytest.raises(ValidationError):
        CurateItem(first=IMG, last=IMG, middle=IMG)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        CurateItem(id="x" * 257, first=IMG, last=IMG)
    with pytest.raises(ValidationError):
        CurateRequest(items=[CurateItem(first=IMG, last=IMG)] * (MAX_GROUPS + 1))


def result(item_id: str | None) -> dict[str, Any]:
    criteria = {c: {"score": 0.9, "raw": 0.9, "levels": [0.9, 0.1]} for c in CURATION_CRITERIA}
    return {"id": item_id, "criteria": criteria, "category": {"category": "pose", "probs": PROBS}}


def response(*items: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(items), "rubrics": {"curation/stable": "curation/stable/1-abcdef12"},
            "backend": "openai", "model": "m", "is_language_model": True}  # fmt: skip


def test_a_result_without_summary_parses() -> None:
    parsed = CurateResult.model_validate(result("w"))
    assert parsed.summary is None and parsed.criteria["stable"] == RubricScore(score=0.9, raw=0.9, levels=[0.9, 0.1])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with running(ScriptedServer()) as live:
        yield live


@pytest.mark.anyio
async def test_curate_posts_the_request_and_checks_the_count(server: ScriptedServer) -> None:
    request = CurateRequest(items=[CurateItem(id="a", first=IMG, last=IMG), CurateItem(first=IMG, last=IMG)])
    server.script(Reply(200, response(result("a"), result(None))), Reply(200, response(result("a"))))
    async with JudgeClient(server.base_url, retry=RetryPolicy(1, 0.01, 0.01)) as client:
        parsed = await client.curate(request, request_id="req-1")
        assert [item.id for item in parsed.items] == ["a", None]
        with pytest.raises(InvalidResponseError, match="1 results for 2 items"):
            await client.curate(request)
    first = server.hits[0]
    assert first.path == JUDGE_CURATE_PATH and first.headers["x-request-id"] == "req-1"
    assert json.loads(first.body) == request.model_dump(mode="json")

"""OpenAIJudge against a fake OpenAI-compatible server over real loopback HTTP (benchmarks/fake_upstream.py).

Expected scores are computed by hand from the logprobs each test makes the upstream answer, so the
whole path (request, top_logprobs parsing, renormalisation, expected value) is checked end to end.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
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
    malformed_json,
    no_choice_tokens,
    running_upstream,
    slow,
    without_logprobs,
)
from motionnft.contracts.images import encode_image
from motionnft.judge_scores import COMPARE_CHOICES, RATING_CHOICES, expected_rating
from services.mllm_judge.backends import openai_backend
from services.mllm_judge.backends.base import JudgeFailure, JudgeQuestion
from services.mllm_judge.backends.openai_backend import OpenAIJudge, UpstreamUnavailable, first_token_logprobs
from tests.motionnft.contracts.fake_servers import closed_port_url

pytestmark = pytest.mark.anyio

LEVELS = [0.05, 0.05, 0.1, 0.2, 0.4, 0.2]  # P("0") .. P("5")
BAD_LOGPROB = b'{"choices": [{"logprobs": {"content": [{"token": "4", "logprob": "high", "top_logprobs": []}]}}]}'
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.02}  # tiny jittered waits keep retries quick


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def live() -> Iterator[ChatCompletionsUpstream]:
    upstream = ChatCompletionsUpstream(logprobs=logprobs_from_levels(LEVELS, extra={"The": math.log(0.001)}))
    with running_upstream(upstream):
        yield upstream


@pytest.fixture
def upstream(live: ChatCompletionsUpstream) -> ChatCompletionsUpstream:
    live.reset()  # every test starts with no script, no recorded requests and fresh counters
    return live


@asynccontextmanager
async def loaded(base_url: str, **kwargs: Any) -> AsyncIterator[OpenAIJudge]:
    judge = OpenAIJudge(base_url, kwargs.pop("model", DEFAULT_MODEL), **{**FAST, **kwargs})
    await judge.load()
    try:
        yield judge
    finally:
        await judge.close()


def _image(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _rating(prompt: str = "Rate the edit. Instruction: raise the arm", *images: np.ndarray, **kw: Any) -> JudgeQuestion:
    images = images or (_image(1), _image(2))
    return JudgeQuestion("rating", "edit", "v1", prompt, tuple(images), RATING_CHOICES, **kw)


def _score(levels: list[float]) -> float:
    return expected_rating(levels)[1]


def _failure(result: object, *phrases: str) -> JudgeFailure:
    assert isinstance(result, JudgeFailure), f"expected a JudgeFailure, got {result!r}"
    for phrase in phrases:
        assert phrase in str(result), f"{phrase!r} not in {result}"
    return result


# --- scores ---------------------------------------------------------------------------------------


async def test_distribution_and_score_match_a_hand_computation(upstream: ChatCompletionsUpstream) -> None:
    async with loaded(upstream.base_url) as judge:
        [levels] = await judge.answer([_rating()])
    assert isinstance(levels, list)
    # The digits hold 0.999 of the mass ("The" has the rest); renormalised over them they are LEVELS.
    assert levels == pytest.approx(LEVELS, abs=1e-12)
    by_hand = (0 * 0.05 + 1 * 0.05 + 2 * 0.1 + 3 * 0.2 + 4 * 0.4 + 5 * 0.2) / 5  # 3.45 / 5
    assert abs(_score(levels) - by_hand) < 1e-9


async def test_digits_missing_from_top_logprobs_are_renormalised_away(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(answer({"4": math.log(0.5), "3": math.log(0.2), "The": math.log(0.1)}))
    async with loaded(upstream.base_url) as judge:
        [levels] = await judge.answer([_rating()])
    assert isinstance(levels, list)
    assert levels == pytest.approx([0, 0, 0, 0.2 / 0.7, 0.5 / 0.7, 0], abs=1e-12)
    assert abs(_score(levels) - (3 * 0.2 + 4 * 0.5) / 0.7 / 5) < 1e-9


async def test_tokens_with_surrounding_spaces_count_as_their_digit(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(answer({" 4": math.log(0.4), "4": math.log(0.2), "5 ": math.log(0.2), "\n2": math.log(0.1)}))
    async with loaded(upstream.base_url) as judge:
        [levels] = await judge.answer([_rating()])
    assert isinstance(levels, list)
    assert levels == pytest.approx([0, 0, 0.1 / 0.9, 0, 0.6 / 0.9, 0.2 / 0.9], abs=1e-12)
    assert abs(_score(levels) - (2 * 0.1 + 4 * 0.6 + 5 * 0.2) / 0.9 / 5) < 1e-9


async def test_compare_questions_read_a_and_b(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(answer({"A": math.log(0.6), "B": math.log(0.3), "Both": math.log(0.05)}))
    question = JudgeQuestion(
        "compare", "edit", "v1", "Which is better?", (_image(1), _image(2), _image(3)), COMPARE_CHOICES
    )
    async with loaded(upstream.base_url) as judge:
        [p] = await judge.answer([question])
    assert p == pytest.approx([2 / 3, 1 / 3], abs=1e-12)


def test_first_token_logprobs_adds_the_sampled_token_and_merges_duplicates() -> None:
    first = {
        "token": "4",
        "logprob": math.log(0.5),
        "top_logprobs": [{"token": "3", "logprob": math.log(0.1)}, {"token": "3", "logprob": math.log(0.2)}],
    }
    got = first_token_logprobs({"choices": [{"logprobs": {"content": [first]}}]})
    assert got == pytest.approx({"4": math.log(0.5), "3": math.log(0.3)}, abs=1e-12)


# --- the request ----------------------------------------------------------------------------------


async def test_request_body_is_exactly_the_specified_one(upstream: ChatCompletionsUpstream) -> None:
    original, edited, target = _image(10), _image(11), _image(12)
    question = _rating("Instruction: turn the head", original, edited, target=target)
    async with loaded(upstream.base_url, top_logprobs=7) as judge:
        await judge.answer([question])
    [received] = upstream.completions
    assert received.method == "POST" and received.path == "/v1/chat/completions"
    assert received.body == {
        "model": DEFAULT_MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + encode_image(original)}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + encode_image(edited)}},
                    {"type": "text", "text": "Instruction: turn the head"},
                ],
            }
        ],
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 7,
    }
    assert encode_image(target) not in str(received.body)  # the target is never sent
    assert received.headers["content-type"] == "application/json"
    assert "authorization" not in received.headers


async def test_an_image_shared_by_questions_is_encoded_once(
    upstream: ChatCompletionsUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def counting(pixels: np.ndarray) -> str:
        calls.append(id(pixels))
        return encode_image(pixels)

    monkeypatch.setattr(openai_backend, "encode_image", counting)
    source, edits = _image(0), [_image(seed) for seed in range(1, 9)]
    async with loaded(upstream.base_url) as judge:
        answers = await judge.answer([_rating(f"edit {k}", source, edit) for k, edit in enumerate(edits)])
    assert all(isinstance(a, list) for a in answers)
    assert len(calls) == 9
    urls = [r.body["messages"][0]["content"][0]["image_url"]["url"] for r in upstream.completions]
    assert set(urls) == {"data:image/png;base64," + encode_image(source)}


async def test_api_key_is_sent_as_a_bearer_token() -> None:
    upstream = ChatCompletionsUpstream(api_key="sekrit")
    with running_upstream(upstream) as base_url:
        async with loaded(base_url, api_key="sekrit") as judge:
            [levels] = await judge.answer([_rating()])
        assert isinstance(levels, list)
        assert {r.headers["authorization"] for r in upstream.received} == {"Bearer sekrit"}
        with pytest.raises(UpstreamUnavailable, match="HTTP 401"):
            await OpenAIJudge(base_url, DEFAULT_MODEL, api_key="wrong").load()


# --- load -----------------------------------------------------------------------------------------


async def test_load_checks_the_model_is_served(upstream: ChatCompletionsUpstream) -> None:
    async with loaded(upstream.base_url):
        pass
    assert [(r.method, r.path) for r in upstream.received] == [("GET", "/v1/models")]
    with pytest.raises(UpstreamUnavailable, match="does not serve model 'other/model'"):
        await OpenAIJudge(upstream.base_url, "other/model").load()
    with pytest.raises(UpstreamUnavailable, match="ConnectError"):
        await OpenAIJudge(closed_port_url() + "/v1", DEFAULT_MODEL).load()


async def test_the_model_check_can_be_skipped(upstream: ChatCompletionsUpstream) -> None:
    async with loaded(upstream.base_url, model="other/model", check_model=False):
        pass
    assert upstream.received == []


async def test_answer_before_load_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="load"):
        await OpenAIJudge("http://127.0.0.1:9/v1", DEFAULT_MODEL).answer([_rating()])


# --- failures -------------------------------------------------------------------------------------


async def test_a_timeout_is_a_failure_after_the_attempts(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(then=slow(1.0))
    async with loaded(upstream.base_url, timeout_s=0.2, max_attempts=2) as judge:
        started = time.monotonic()
        [result] = await judge.answer([_rating()])
    _failure(result, "timed out", "2 attempts")
    assert time.monotonic() - started < 0.9
    assert len(upstream.completions) == 2


async def test_5xx_is_retried_until_the_attempts_run_out(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(then=error(500, message="engine dead"))
    async with loaded(upstream.base_url, max_attempts=3) as judge:
        [result] = await judge.answer([_rating()])
    _failure(result, "HTTP 500", "engine dead", "3 attempts")
    assert len(upstream.completions) == 3


async def test_a_passing_5xx_is_retried_to_success(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(error(502), error(503))
    async with loaded(upstream.base_url, max_attempts=3) as judge:
        [levels] = await judge.answer([_rating()])
    assert levels == pytest.approx(LEVELS, abs=1e-12)
    assert len(upstream.completions) == 3


async def test_429_honours_retry_after_then_succeeds(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(error(429, retry_after="1"))
    async with loaded(upstream.base_url) as judge:
        started = time.monotonic()
        [levels] = await judge.answer([_rating()])
    assert time.monotonic() - started >= 1.0  # the jittered backoff alone is at most 0.02 s
    assert levels == pytest.approx(LEVELS, abs=1e-12)
    assert len(upstream.completions) == 2


async def test_a_retry_after_past_the_deadline_fails_at_once(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(error(429, retry_after="30"))
    async with loaded(upstream.base_url, deadline_s=5.0) as judge:
        started = time.monotonic()
        [result] = await judge.answer([_rating()])
    _failure(result, "HTTP 429", "deadline")
    assert time.monotonic() - started < 1.0
    assert len(upstream.completions) == 1


async def test_400_is_not_retried(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(error(400, message="image too large"))
    async with loaded(upstream.base_url) as judge:
        [result] = await judge.answer([_rating()])
    _failure(result, "HTTP 400", "image too large", "not retried")
    assert len(upstream.completions) == 1


@pytest.mark.parametrize(
    ("behaviour", "phrase"),
    [
        (malformed_json(), "not JSON"),
        (without_logprobs(), "lacks choices[0].logprobs.content[0]"),
        (Behaviour(body=BAD_LOGPROB), "logprob 'high'"),
        (Behaviour(body=b'{"choices": "none"}'), "lacks choices[0]"),
        (Behaviour(body=b"[1, 2]"), "lacks choices[0]"),
        (no_choice_tokens(), "no usable choice token"),
        (answer({"4": 0.5}), "invalid logprobs"),  # a positive logprob
    ],
)
async def test_a_bad_answer_is_a_failure_not_retried(
    upstream: ChatCompletionsUpstream, behaviour: Behaviour, phrase: str
) -> None:
    upstream.script(behaviour)
    async with loaded(upstream.base_url) as judge:
        [result] = await judge.answer([_rating()])
    _failure(result, phrase)
    assert len(upstream.completions) == 1


async def test_an_unreachable_upstream_is_a_failure() -> None:
    async with loaded(closed_port_url() + "/v1", check_model=False, max_attempts=2) as judge:
        [result] = await judge.answer([_rating()])
    _failure(result, "unreachable", "ConnectError", "2 attempts")


async def test_one_failing_question_leaves_the_others_alone(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(then=error(400), marker="question-bad")
    upstream.script(then=malformed_json(), marker="question-garbled")
    upstream.script(then=slow(1.0), marker="question-slow")
    prompts = ["question-ok-1", "question-bad", "question-garbled", "question-slow", "question-ok-2"]
    async with loaded(upstream.base_url, timeout_s=0.3, max_attempts=1) as judge:
        answers = await judge.answer([_rating(p) for p in prompts])
    assert answers[0] == pytest.approx(LEVELS, abs=1e-12)
    _failure(answers[1], "HTTP 400")
    _failure(answers[2], "not JSON")
    _failure(answers[3], "timed out")
    assert answers[4] == pytest.approx(LEVELS, abs=1e-12)


# --- concurrency ----------------------------------------------------------------------------------


async def test_upstream_concurrency_is_bounded_and_kept_busy() -> None:
    upstream = ChatCompletionsUpstream(logprobs=logprobs_from_levels(LEVELS), latency_s=0.05, record=False)
    source = _image(0)
    questions = [_rating(f"edit {k}", source, _image(k + 1)) for k in range(40)]
    with running_upstream(upstream) as base_url:
        async with loaded(base_url, max_concurrency=16) as judge:
            answers = await judge.answer(questions)
    assert all(a == pytest.approx(LEVELS, abs=1e-12) for a in answers)
    assert upstream.served == 41  # 40 questions and the model check
    assert 12 <= upstream.peak_concurrency <= 16

"""OpenAIJudge.describe against the fake upstream over loopback: the text request (greedy, `max_tokens`,
no logprobs), the stripped content as the answer, every unusable answer a JudgeFailure naming its
cause, and the retries of answer() (5xx retried, 4xx not)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from benchmarks.fake_upstream import (
    DEFAULT_MODEL,
    Behaviour,
    ChatCompletionsUpstream,
    completion_body,
    error,
    malformed_json,
    running_upstream,
    text_answer,
)
from services.mllm_judge.backends.base import JudgeFailure, JudgeQuestion
from services.mllm_judge.backends.openai_backend import OpenAIJudge
from services.mllm_judge.backends.openai_wire import message_text

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def live() -> Iterator[ChatCompletionsUpstream]:
    upstream = ChatCompletionsUpstream(default_text="A cat jumps onto the table.")
    with running_upstream(upstream):
        yield upstream


@pytest.fixture
async def judge(live: ChatCompletionsUpstream) -> AsyncIterator[OpenAIJudge]:
    live.reset()
    backend = OpenAIJudge(live.base_url, DEFAULT_MODEL, max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.02)
    await backend.load()
    yield backend
    await backend.close()


def describe_question(prompt: str = "What motion happened? One sentence.") -> JudgeQuestion:
    frames = tuple(np.random.default_rng(s).integers(0, 256, (24, 24, 3), dtype=np.uint8) for s in (1, 2))
    return JudgeQuestion("describe", "curation/summary", "v1", prompt, frames, ())


def body_with_content(content: object) -> Behaviour:
    body = json.loads(completion_body({"The": -0.1}))
    body["choices"][0]["message"]["content"] = content
    return Behaviour(body=json.dumps(body).encode())


async def test_describe_sends_a_greedy_text_request_and_reads_the_content(
    judge: OpenAIJudge, live: ChatCompletionsUpstream
) -> None:
    live.script(text_answer("  The man raises his left arm.\n"))
    told = await judge.describe([describe_question(), describe_question("Another prompt")], max_tokens=48)
    assert sorted(str(t) for t in told) == ["A cat jumps onto the table.", "The man raises his left arm."]
    for request in live.completions:
        body = request.body
        assert (body["model"], body["max_tokens"], body["temperature"]) == (DEFAULT_MODEL, 48, 0)
        assert "logprobs" not in body and "top_logprobs" not in body
        content = body["messages"][0]["content"]
        assert [c["type"] for c in content] == ["image_url", "image_url", "text"]
        assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("behaviour", "cause"),
    [
        (text_answer("   \n"), "is empty"),
        (body_with_content(None), "is not text"),
        (body_with_content(42), "is not text"),
        (Behaviour(body=b'{"choices": []}'), "lacks choices[0].message.content"),
        (malformed_json(), "not JSON"),
        (error(400, message="image too large"), "image too large (not retried)"),
    ],
    ids=["blank", "null", "number", "no-choices", "malformed", "http-400"],
)
async def test_an_unusable_text_answer_is_a_failure(
    judge: OpenAIJudge, live: ChatCompletionsUpstream, behaviour: Behaviour, cause: str
) -> None:
    live.script(behaviour)
    (told,) = await judge.describe([describe_question()], max_tokens=16)
    assert isinstance(told, JudgeFailure) and cause in str(told)
    assert len(live.completions) == 1


async def test_a_5xx_is_retried(judge: OpenAIJudge, live: ChatCompletionsUpstream) -> None:
    live.script(error(503), text_answer("The door opens."))
    assert await judge.describe([describe_question()], max_tokens=16) == ["The door opens."]
    assert len(live.completions) == 2


def test_content_parts_are_joined() -> None:
    parts = [{"type": "text", "text": "The dog "}, {"type": "image_url"}, {"type": "text", "text": "sits."}]
    assert message_text({"choices": [{"message": {"content": parts}}]}) == "The dog sits."
    with pytest.raises(JudgeFailure, match="not text"):
        message_text({"choices": [{"message": {"content": [{"type": "image_url"}]}}]})

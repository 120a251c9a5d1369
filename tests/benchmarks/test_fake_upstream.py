"""The fake chat-completions upstream (benchmarks/fake_upstream.py), the judge tests' stand-in for vLLM:
which answer a request gets (responder, scripts, the logprobs or the text default), and that a
request for logprobs still takes the unparsed fast path."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from benchmarks import fake_upstream
from benchmarks.fake_upstream import (
    Behaviour,
    ChatCompletionsUpstream,
    answer,
    running_upstream,
    text_answer,
    text_body,
)

LOGPROBS = {"4": math.log(0.7), "3": math.log(0.3)}


def request(prompt: str, **fields: Any) -> dict[str, Any]:
    return {"model": "fake/judge-vl", "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
            "temperature": 0, **fields}  # fmt: skip


RATING = {"max_tokens": 1, "logprobs": True, "top_logprobs": 20}
TEXT = {"max_tokens": 64}


@pytest.fixture(scope="module")
def live() -> Iterator[ChatCompletionsUpstream]:
    upstream = ChatCompletionsUpstream(logprobs=LOGPROBS, default_text="A bird lands.")
    with running_upstream(upstream):
        yield upstream


@pytest.fixture
def upstream(live: ChatCompletionsUpstream) -> Iterator[ChatCompletionsUpstream]:
    live.reset()
    yield live
    live.responder = None


def post(upstream: ChatCompletionsUpstream, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{upstream.base_url}/chat/completions", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def content(body: dict[str, Any]) -> str:
    return body["choices"][0]["message"]["content"]


def top(body: dict[str, Any]) -> dict[str, float]:
    return {t["token"]: t["logprob"] for t in body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]}


def test_the_default_answer_follows_what_was_asked(upstream: ChatCompletionsUpstream) -> None:
    rated = post(upstream, request("Rate it", **RATING))
    assert top(rated) == LOGPROBS and content(rated) == "4"
    told = post(upstream, request("Say what moved", **TEXT))
    assert content(told) == "A bird lands." and told["choices"][0]["logprobs"] is None
    # One token without logprobs is still the logprobs completion (a server that ignores them).
    assert content(post(upstream, request("Rate it", max_tokens=1))) == "4"
    assert [r.body["messages"][0]["content"][0]["text"] for r in upstream.completions] == ["Rate it", "Say what moved",
                                                                                          "Rate it"]  # fmt: skip


def test_a_scripted_text_answer_may_carry_logprobs(upstream: ChatCompletionsUpstream) -> None:
    upstream.script(text_answer("The door opens."), Behaviour(text="Yes, it moved.", logprobs={"Yes": -0.2}))
    assert content(post(upstream, request("a", **TEXT))) == "The door opens."
    with_logprobs = post(upstream, request("b", **RATING))
    assert content(with_logprobs) == "Yes, it moved." and top(with_logprobs) == {"Yes": -0.2}
    assert content(post(upstream, request("c", **TEXT))) == "A bird lands."  # the script ran out


def test_the_responder_answers_before_the_scripts(upstream: ChatCompletionsUpstream) -> None:
    seen: list[Any] = []

    def responder(body: Any) -> Behaviour | None:
        seen.append(body)
        prompt = body["messages"][0]["content"][0]["text"]
        return answer({"B": -0.05, "A": -3.0}) if "which" in prompt else None

    upstream.responder = responder
    upstream.script(text_answer("scripted"))
    assert top(post(upstream, request("which is better", **RATING))) == {"B": -0.05, "A": -3.0}
    assert content(post(upstream, request("describe", **TEXT))) == "scripted"  # None: the script decides
    assert [b["messages"][0]["content"][0]["text"] for b in seen] == ["which is better", "describe"]
    assert len(upstream.completions) == 2  # recording is unchanged


def test_a_request_for_logprobs_is_not_parsed(
    upstream: ChatCompletionsUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[bytes] = []
    monkeypatch.setattr(fake_upstream, "_parse", lambda body: parsed.append(body))
    upstream.record = False
    try:
        assert top(post(upstream, request("Rate it", **RATING))) == LOGPROBS
        assert parsed == []
    finally:
        upstream.record = True


def test_text_body_is_a_chat_completion() -> None:
    body = json.loads(text_body("The cat sits.", model="m"))
    assert body["model"] == "m" and content(body) == "The cat sits." and body["choices"][0]["logprobs"] is None
    assert body["choices"][0]["finish_reason"] == "stop"

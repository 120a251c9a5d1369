"""A judge for the test corpus behind the fake OpenAI-compatible upstream: it answers the curation
rubrics the way a vision-language model would for these clips, by looking at the images it is sent.

- ``curation/intact``: No when the last frame shows the corpus's magenta occluder, Yes otherwise;
- the other criteria: Yes (P = 0.9); ``curation/category``: 2 (locomotion, P = 0.8);
- ``curation/summary``: "The round patch moves to the right.";
- the instruction writer (a request with a system turn): "Move the round patch to the right.".
"""

from __future__ import annotations

import base64
import io
import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.fake_upstream import (
    DEFAULT_MODEL,
    Behaviour,
    ChatCompletionsUpstream,
    answer,
    error,
    running_upstream,
    text_answer,
)
from motionnft.mining.corpus import OCCLUDER_RGB
from services.mllm_judge.app import create_app
from services.mllm_judge.rubrics import CURATION_RUBRICS
from services.mllm_judge.settings import MllmJudgeSettings
from tests.services.harness import in_thread

SUMMARY = "The round patch moves to the right."
INSTRUCTION = "Move the round patch to the right."
YES = {"Yes": math.log(0.9), "No": math.log(0.1)}
NO = {"Yes": math.log(0.05), "No": math.log(0.95)}


def _image(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def shows_occluder(image: np.ndarray) -> bool:
    """More than 2 % of the pixels are the occluder's magenta (within the codec's error)."""
    close = np.abs(image.astype(int) - np.array(OCCLUDER_RGB)).max(axis=-1) < 60
    return bool(close.mean() > 0.02)


class CorpusJudge:
    """The fake upstream's responder (``ChatCompletionsUpstream(responder=CorpusJudge())``); counts what it answers."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()
        self.writer_answer = INSTRUCTION
        self.failing: set[str] = set()  # "judge" and/or "writer": answer those with HTTP 500

    def __call__(self, body: Any) -> Behaviour | None:
        messages = body["messages"]
        if messages[0]["role"] == "system":
            self.asked["writer"] += 1
            return error(500) if "writer" in self.failing else text_answer(self.writer_answer)
        if "judge" in self.failing:
            self.asked["failed"] += 1
            return error(500)
        content = messages[-1]["content"]
        text = next(part["text"] for part in content if part["type"] == "text")
        images = [_image(part["image_url"]["url"]) for part in content if part["type"] == "image_url"]
        rubric = next((r for r in CURATION_RUBRICS.values() if r.template == text), None)
        if rubric is None:
            return None  # not a curation question: the upstream's default answer
        self.asked[rubric.name] += 1
        if rubric.name == "curation/summary":
            return text_answer(SUMMARY)
        if rubric.name == "curation/category":
            return answer({"2": math.log(0.8), "1": math.log(0.1), "5": math.log(0.1)})
        if rubric.name == "curation/intact" and shows_occluder(images[-1]):
            return answer(NO)
        return answer(YES)


@contextmanager
def judge_in_thread() -> Iterator[tuple[ChatCompletionsUpstream, str]]:
    """(the upstream, whose responder is a CorpusJudge, and the judge service's URL): the real judge
    app (openai backend, no answer cache, one attempt) in a thread in front of the upstream."""
    upstream = ChatCompletionsUpstream(responder=CorpusJudge())
    with running_upstream(upstream) as base_url:
        settings = MllmJudgeSettings(backend="openai", openai_base_url=base_url, openai_model=DEFAULT_MODEL,
                                     openai_max_attempts=1, cache_mb=0)  # fmt: skip
        with in_thread(create_app(settings)) as judge_url:
            yield upstream, judge_url

"""The judge against an upstream that answers what no model server should: every such answer is one
counted per-item failure beside the other items' scores, never a 500 and never a swollen process."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np
import psutil
import pytest

from benchmarks.fake_upstream import (
    DEFAULT_MODEL,
    Behaviour,
    ChatCompletionsUpstream,
    completion_body,
    logprobs_from_levels,
    running_upstream,
)
from motionnft.contracts.images import encode_image
from motionnft.contracts.judge import JUDGE_SCORE_PATH
from services.mllm_judge.app import create_app
from services.mllm_judge.settings import MllmJudgeSettings
from tests.services.harness import in_process

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
LEVELS = [0.0, 0.0, 0.1, 0.2, 0.7, 0.0]


def deeply_nested() -> Behaviour:
    """100,000 nested arrays: Python's json module raises RecursionError on it."""
    return Behaviour(body=b'{"choices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def huge_integer_logprob() -> Behaviour:
    """A well-formed completion whose logprobs are a 400-digit integer: float() raises OverflowError."""
    body = completion_body(logprobs_from_levels(LEVELS)).decode()
    return Behaviour(body=body.replace('"logprob": -0.35667494393873245', '"logprob": -' + "9" * 400).encode())


def gzip_bomb(expanded_mb: int = 64) -> Behaviour:
    """`expanded_mb` MB of zeros in a gzip body of ~64 KB per 64 MB, sent with Content-Encoding: gzip."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    block = bytes(2**20)
    body = b"".join(packer.compress(block) for _ in range(expanded_mb)) + packer.flush()
    return Behaviour(body=body, headers={"Content-Encoding": "gzip"})


@pytest.fixture(scope="module")
def upstream() -> Iterator[ChatCompletionsUpstream]:
    fake = ChatCompletionsUpstream(logprobs=logprobs_from_levels(LEVELS))
    with running_upstream(fake):
        yield fake


async def test_every_hostile_answer_is_a_counted_item_failure(upstream: ChatCompletionsUpstream) -> None:
    assert "-0.35667494393873245" in completion_body(logprobs_from_levels(LEVELS)).decode()  # what is replaced
    upstream.reset()
    hostile = {"nested": deeply_nested(), "bigint": huge_integer_logprob(), "bomb": gzip_bomb()}
    for marker, behaviour in hostile.items():
        upstream.script(behaviour, marker=f"subject-{marker}", then=behaviour)
    rng = np.random.default_rng(0)
    source, edit = (encode_image(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(2))
    groups = [{"id": name, "instruction": f"Move subject-{name}", "source": source, "edits": [edit]}
              for name in [*hostile, "fine"]]  # fmt: skip
    settings = MllmJudgeSettings(backend="openai", openai_base_url=upstream.base_url, openai_model=DEFAULT_MODEL,
                                 openai_max_attempts=1)  # fmt: skip
    process = psutil.Process()
    before_mb = process.memory_info().rss / 2**20
    async with in_process(create_app(settings)) as client:
        response = await client.post(JUDGE_SCORE_PATH, json={"groups": groups})
        metrics = (await client.get("/metrics")).text
    grown_mb = process.memory_info().rss / 2**20 - before_mb
    assert response.status_code == 200, response.text
    scores = {group["id"]: group["scores"][0]["edit"] for group in response.json()["groups"]}
    assert scores["fine"]["score"] == pytest.approx((2 * 0.1 + 3 * 0.2 + 4 * 0.7) / 5)
    assert "not JSON" in scores["nested"]["error"]
    assert "out-of-range logprob" in scores["bigint"]["error"]
    assert "larger than" in scores["bomb"]["error"]
    for name in hostile:
        assert set(scores[name]) == {"error"}  # no number next to a failure
    assert "mllm_judge_question_failures_total 3.0" in metrics
    assert grown_mb < 200, f"the judge's process grew by {grown_mb:.0f} MB reading a 64 MB gzip bomb"

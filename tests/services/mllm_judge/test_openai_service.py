"""The judge service with the openai backend, end to end against the fake upstream over loopback."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from benchmarks.fake_upstream import (
    DEFAULT_MODEL,
    ChatCompletionsUpstream,
    answer,
    logprobs_from_levels,
    malformed_json,
    running_upstream,
)
from motionnft.contracts.images import encode_image
from motionnft.contracts.judge import JUDGE_COMPARE_PATH, JUDGE_SCORE_PATH, JudgeScoreResponse
from motionnft.judge_scores import expected_rating
from services.mllm_judge.app import create_app
from services.mllm_judge.settings import MllmJudgeSettings
from tests.services.harness import assert_problem, in_process

pytestmark = pytest.mark.anyio
LEVELS = [0.0, 0.05, 0.1, 0.2, 0.5, 0.15]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ChatCompletionsUpstream]:
    fake = ChatCompletionsUpstream(logprobs=logprobs_from_levels(LEVELS))
    with running_upstream(fake):
        yield fake


def judge(upstream: ChatCompletionsUpstream):
    settings = MllmJudgeSettings(
        backend="openai", openai_base_url=upstream.base_url, openai_model=DEFAULT_MODEL, openai_max_attempts=1
    )
    return create_app(settings)


def photo(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def rotated_jpeg(pixels: np.ndarray) -> str:
    """A JPEG whose EXIF says 'rotate 90°': a server must not get these bytes as they are."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", exif=exif)
    import base64

    return base64.b64encode(buffer.getvalue()).decode()


async def test_scores_come_from_upstream_logprobs(upstream: ChatCompletionsUpstream) -> None:
    upstream.reset()
    source, edit = encode_image(photo(0)), encode_image(photo(1))
    body = {"groups": [{"id": "g", "instruction": "Turn the cat toward the door", "source": source, "edits": [edit]}]}
    async with in_process(judge(upstream)) as client:
        response = await client.post(JUDGE_SCORE_PATH, json=body)
    assert response.status_code == 200, response.text
    parsed = JudgeScoreResponse.model_validate(response.json())
    assert parsed.backend == "openai" and parsed.model == DEFAULT_MODEL and parsed.is_language_model
    score = parsed.groups[0].scores[0]["edit"]
    raw, expected = expected_rating(LEVELS)
    assert score.raw == pytest.approx(raw, abs=1e-9) and score.score == pytest.approx(expected, abs=1e-9)
    # The client's own bytes are forwarded as they came: no re-encoding on the way to the model.
    content = upstream.completions[0].body["messages"][0]["content"]
    assert [c["image_url"]["url"] for c in content[:2]] == [
        f"data:image/png;base64,{source}",
        f"data:image/png;base64,{edit}",
    ]
    assert "Turn the cat toward the door" in content[2]["text"]


async def test_exif_rotated_images_are_sent_upright(upstream: ChatCompletionsUpstream) -> None:
    upstream.reset()
    pixels = photo(2)
    body = {
        "groups": [{"instruction": "Raise the arm", "source": rotated_jpeg(pixels), "edits": [encode_image(photo(3))]}]
    }
    async with in_process(judge(upstream)) as client:
        assert (await client.post(JUDGE_SCORE_PATH, json=body)).status_code == 200
    sent = upstream.completions[0].body["messages"][0]["content"][0]["image_url"]["url"]
    assert sent.startswith("data:image/png;base64,")  # re-encoded from the upright pixels
    import base64

    upright = np.asarray(Image.open(io.BytesIO(base64.b64decode(sent.split(",", 1)[1]))))
    assert upright.shape == (64, 48, 3)  # rotated by the EXIF tag


async def test_upstream_failure_is_an_error_not_a_score(upstream: ChatCompletionsUpstream) -> None:
    upstream.reset()
    upstream.script(malformed_json(), marker="Open the door")
    groups = [
        {"instruction": "Open the door", "source": encode_image(photo(4)), "edits": [encode_image(photo(5))]},
        {"instruction": "Close the door", "source": encode_image(photo(6)), "edits": [encode_image(photo(7))]},
    ]
    async with in_process(judge(upstream)) as client:
        response = await client.post(JUDGE_SCORE_PATH, json={"groups": groups})
        failed_raw = response.json()["groups"][0]["scores"][0]["edit"]
        assert set(failed_raw) == {"error"}  # no score, raw or levels: nothing that looks like a number
        assert response.json()["groups"][1]["scores"][0]["edit"]["score"] is not None
        upstream.script(malformed_json(), malformed_json())
        only = {"groups": [groups[0] | {"instruction": "Open the window"}]}
        assert_problem(await client.post(JUDGE_SCORE_PATH, json=only), 502)


async def test_compare_asks_both_orders(upstream: ChatCompletionsUpstream) -> None:
    upstream.reset()
    pair = {
        "instruction": "Wave",
        "source": encode_image(photo(8)),
        "a": encode_image(photo(9)),
        "b": encode_image(photo(10)),
    }
    # A judge that always prefers whatever is shown first: pure position bias, which both orders cancel.
    first = answer({"A": math.log(0.7), "B": math.log(0.3)})
    upstream.script(first, first)
    async with in_process(judge(upstream)) as client:
        response = await client.post(JUDGE_COMPARE_PATH, json={"pairs": [pair]})
    assert response.status_code == 200, response.text
    result = response.json()["pairs"][0]
    assert result["prob_a"] == pytest.approx(0.5, abs=1e-12) and result["verdict"] == "tie"
    sent = [[c["image_url"]["url"] for c in r.body["messages"][0]["content"][1:3]] for r in upstream.completions]
    a, b = (f"data:image/png;base64,{pair[k]}" for k in ("a", "b"))
    assert sorted(sent) == sorted([[a, b], [b, a]])

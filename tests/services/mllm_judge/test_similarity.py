"""The weight-free similarity stand-in: SSIM to the target as a 0-5 rating with consistent levels,
a sigmoid of the SSIM gap for comparisons, and a failure (never a 0) without a target."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from motionnft.judge_scores import COMPARE_CHOICES, RATING_CHOICES, expected_rating
from services.mllm_judge.backends.base import JudgeFailure, JudgeQuestion
from services.mllm_judge.backends.similarity import COMPARE_TEMPERATURE, SimilarityJudge, rating_levels, similarity
from tests.motionnft.flow.known_motion import photograph

pytestmark = pytest.mark.anyio
SIGMAS = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return photograph("astronaut", 128)


def noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """The image plus Gaussian noise of `sigma` grey levels; one noise field per seed, only scaled."""
    field = np.random.default_rng(seed).standard_normal(image.shape)
    return np.clip(image + sigma * field, 0, 255).astype(np.uint8)


def rating(edit: np.ndarray, target: np.ndarray | None, source: np.ndarray | None = None) -> JudgeQuestion:
    source = edit if source is None else source
    return JudgeQuestion(kind="rating", rubric="edit", rubric_version="edit/1-test", prompt="Instruction: anything",
                         images=(source, edit), choices=RATING_CHOICES, target=target)  # fmt: skip


def comparison(a: np.ndarray, b: np.ndarray, target: np.ndarray | None) -> JudgeQuestion:
    return JudgeQuestion(kind="compare", rubric="compare", rubric_version="compare/1-test", prompt="A or B",
                         images=(a, a, b), choices=COMPARE_CHOICES, target=target)  # fmt: skip


async def rate(edit: np.ndarray, target: np.ndarray | None) -> list[float] | JudgeFailure:
    [answer] = await SimilarityJudge().answer([rating(edit, target)])
    return answer


async def raw_of(edit: np.ndarray, target: np.ndarray) -> float:
    answer = await rate(edit, target)
    assert not isinstance(answer, JudgeFailure)
    return expected_rating(answer)[0]


async def test_identical_images_score_five(photo: np.ndarray) -> None:
    answer = await rate(photo, photo.copy())
    assert answer == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert expected_rating(answer) == (5.0, 1.0)


@pytest.mark.parametrize("other", ["coffee", "noise"])
async def test_unrelated_images_score_low(photo: np.ndarray, other: str) -> None:
    if other == "coffee":
        unrelated = photograph("coffee", 128)
    else:
        unrelated = np.random.default_rng(1).integers(0, 256, photo.shape, dtype=np.uint8)
    assert await raw_of(unrelated, photo) < 1.5
    assert await raw_of(photo, unrelated) < 1.5


async def test_rating_falls_as_noise_grows(photo: np.ndarray) -> None:
    raws = [await raw_of(noisy(photo, sigma), photo) for sigma in SIGMAS]
    assert raws[0] == 5.0
    assert all(a > b for a, b in itertools.pairwise(raws)), raws
    assert raws[-1] < 2.5, raws


@pytest.mark.parametrize("ssim", [-0.3, 0.0, 0.13, 0.2, 0.5, 0.71, 0.999, 1.0, 1.2])
def test_levels_are_a_two_point_distribution_with_mean_raw(ssim: float) -> None:
    levels = rating_levels(ssim)
    raw = 5 * min(max(ssim, 0.0), 1.0)
    assert len(levels) == 6 and all(p >= 0.0 for p in levels)
    assert math.isclose(sum(levels), 1.0, abs_tol=1e-12)
    assert math.isclose(expected_rating(levels)[0], raw, abs_tol=1e-12)
    support = [k for k, p in enumerate(levels) if p > 0]
    assert set(support) <= {math.floor(raw), math.ceil(raw)}, levels


async def test_levels_of_real_answers_have_mean_raw(photo: np.ndarray) -> None:
    for sigma in SIGMAS:
        answer = await rate(noisy(photo, sigma), photo)
        assert not isinstance(answer, JudgeFailure)
        expected = 5 * max(similarity(noisy(photo, sigma), photo), 0.0)
        assert math.isclose(expected_rating(answer)[0], expected, abs_tol=1e-9)
        assert math.isclose(sum(answer), 1.0, abs_tol=1e-12) and sum(p > 0 for p in answer) <= 2


async def test_a_target_of_another_size_is_resized(photo: np.ndarray) -> None:
    bigger = photograph("astronaut", 200)
    assert similarity(photo, bigger) > 0.95  # the same picture at another size is still the same picture
    assert await raw_of(photo, bigger) > 4.75
    assert await raw_of(photo, bigger[:150]) < await raw_of(photo, bigger)  # a different crop is not
    wide = photograph("astronaut", 128)[:, :100]
    assert await raw_of(wide, photo) < 5.0  # other aspect ratio: squeezed to the edit's size, no error


async def test_no_target_is_a_failure_not_a_zero(photo: np.ndarray) -> None:
    judge = SimilarityJudge()
    answers = await judge.answer([rating(photo, None), rating(photo, photo), comparison(photo, photo, None)])
    assert isinstance(answers[0], JudgeFailure) and "target" in str(answers[0])
    assert answers[1] == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert isinstance(answers[2], JudgeFailure)


async def test_the_judge_reads_neither_the_prompt_nor_the_source(photo: np.ndarray) -> None:
    edit = noisy(photo, 20.0)
    plain = await rate(edit, photo)
    question = rating(edit, photo, source=photograph("coffee", 128))
    other = JudgeQuestion(**{**question.__dict__, "prompt": "something else entirely", "rubric": "coherence"})
    assert await SimilarityJudge().answer([question, other]) == [plain, plain]


async def test_compare_prefers_the_closer_edit_and_is_antisymmetric(photo: np.ndarray) -> None:
    close, far = noisy(photo, 5.0), noisy(photo, 40.0, seed=1)
    judge = SimilarityJudge()
    first, second, same = await judge.answer(
        [comparison(close, far, photo), comparison(far, close, photo), comparison(close, close, photo)]
    )
    assert not isinstance(first, JudgeFailure) and not isinstance(second, JudgeFailure)
    assert first[0] > 0.99 and math.isclose(sum(first), 1.0)
    assert math.isclose(first[0], second[1], abs_tol=1e-12)
    assert same == [0.5, 0.5]
    gap = similarity(close, photo) - similarity(far, photo)
    assert math.isclose(first[0], 1 / (1 + math.exp(-gap / COMPARE_TEMPERATURE)), rel_tol=1e-12)


def test_identity_says_it_is_not_a_language_model() -> None:
    judge = SimilarityJudge()
    assert judge.name == "similarity" and judge.is_language_model is False
    assert "not a language model" in judge.model

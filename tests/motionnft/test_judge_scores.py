"""Judge score arithmetic (docs/method.md sections 3 and 6), checked against hand computations."""

from __future__ import annotations

import math

import pytest

from motionnft.judge_scores import (
    COMPARE_CHOICES,
    RATING_CHOICES,
    NoChoiceTokens,
    debiased_preference,
    distribution_from_logits,
    distribution_from_logprobs,
    expected_rating,
    verdict,
)

TOL = 1e-9


def close(got: list[float] | tuple[float, ...], want: list[float] | tuple[float, ...]) -> bool:
    return len(got) == len(want) and all(
        math.isclose(g, w, rel_tol=0, abs_tol=TOL) for g, w in zip(got, want, strict=True)
    )


def test_expected_score_from_logprobs_by_hand() -> None:
    # An OpenAI-compatible server's top_logprobs for the first token. Digits present: "3", "4", "5"
    # with p = 0.1, 0.6, 0.2 (mass 0.9); "The" and "\n" are not answers and take no part.
    top = {"4": math.log(0.6), "5": math.log(0.2), "3": math.log(0.1), "The": math.log(0.05), "\n": math.log(0.05)}
    levels = distribution_from_logprobs(top, RATING_CHOICES)
    # Renormalised over the digits: p3 = 0.1/0.9 = 1/9, p4 = 0.6/0.9 = 6/9, p5 = 0.2/0.9 = 2/9; p0 = p1 = p2 = 0.
    assert close(levels, [0, 0, 0, 1 / 9, 6 / 9, 2 / 9])
    raw, score = expected_rating(levels)
    # raw = 3 * 1/9 + 4 * 6/9 + 5 * 2/9 = (3 + 24 + 10) / 9 = 37/9 = 4.111...; score = raw / 5 = 37/45 = 0.8222...
    assert math.isclose(raw, 37 / 9, abs_tol=TOL)
    assert math.isclose(score, 37 / 45, abs_tol=TOL)


def test_expected_rating_by_hand() -> None:
    # raw = 0*0 + 1*0 + 2*0.1 + 3*0.2 + 4*0.7 + 5*0 = 0.2 + 0.6 + 2.8 = 3.6; score = 3.6 / 5 = 0.72
    raw, score = expected_rating([0.0, 0.0, 0.1, 0.2, 0.7, 0.0])
    assert math.isclose(raw, 3.6, abs_tol=TOL) and math.isclose(score, 0.72, abs_tol=TOL)
    assert expected_rating([1, 0, 0, 0, 0, 0]) == (0.0, 0.0)
    assert expected_rating([0, 0, 0, 0, 0, 1]) == (5.0, 1.0)
    # Uniform: raw = (0 + 1 + 2 + 3 + 4 + 5) / 6 = 15/6 = 2.5; score = 0.5
    assert close(expected_rating([1 / 6] * 6), (2.5, 0.5))
    # Another scale, 0..2: raw = 1 * 0.5 + 2 * 0.5 = 1.5; score = 1.5 / 2 = 0.75
    assert close(expected_rating([0.0, 0.5, 0.5]), (1.5, 0.75))


def test_renormalisation_over_the_digits_present() -> None:
    # Only "2" and "5" present, p = 0.3 and 0.1: p2 = 0.3/0.4 = 0.75, p5 = 0.1/0.4 = 0.25.
    levels = distribution_from_logprobs({"2": math.log(0.3), "5": math.log(0.1), "x": math.log(0.6)}, RATING_CHOICES)
    assert close(levels, [0, 0, 0.75, 0, 0, 0.25])
    # raw = 2 * 0.75 + 5 * 0.25 = 1.5 + 1.25 = 2.75
    assert math.isclose(expected_rating(levels)[0], 2.75, abs_tol=TOL)
    # A single digit present takes all the mass, however small its probability.
    assert close(distribution_from_logprobs({"1": -9.0, "yes": -0.0002}, RATING_CHOICES), [0, 1, 0, 0, 0, 0])
    # A digit with probability 0 (logprob -inf) is present but adds nothing.
    assert close(distribution_from_logprobs({"1": -math.inf, "3": -1.0}, RATING_CHOICES), [0, 0, 0, 1, 0, 0])


def test_whitespace_tokens_are_the_same_answer() -> None:
    # " 4" and "4" are one answer: p4 = 0.3 + 0.3 = 0.6; "\n5" is "5": p5 = 0.2; "x" is no answer.
    # Renormalised over 0.8: p4 = 0.75, p5 = 0.25; raw = 4 * 0.75 + 5 * 0.25 = 4.25.
    top = {" 4": math.log(0.3), "4": math.log(0.3), "\n5": math.log(0.2), "x": math.log(0.2)}
    levels = distribution_from_logprobs(top, RATING_CHOICES)
    assert close(levels, [0, 0, 0, 0, 0.75, 0.25])
    assert math.isclose(expected_rating(levels)[0], 4.25, abs_tol=TOL)
    # Inner text is not stripped: "4 5" and "45" are not digits of the scale.
    assert close(
        distribution_from_logprobs({"4 5": -0.1, "45": -0.2, "\t0 ": -3.0}, RATING_CHOICES), [1, 0, 0, 0, 0, 0]
    )


def test_compare_choices_from_logprobs() -> None:
    # P(A) = 0.3, P(B) = 0.1 -> renormalised 0.75, 0.25; " B" counts as "B"; lowercase "a" is not "A".
    got = distribution_from_logprobs({"A": math.log(0.3), " B": math.log(0.1), "a": math.log(0.5)}, COMPARE_CHOICES)
    assert close(got, [0.75, 0.25])


@pytest.mark.parametrize(
    "top", [{}, {"The": -0.1, "score": -2.0}, {"6": -0.1, "10": -1.0}, {"0": -math.inf, "5": -math.inf}]
)
def test_no_choice_tokens(top: dict[str, float]) -> None:
    with pytest.raises(NoChoiceTokens):
        distribution_from_logprobs(top, RATING_CHOICES)
    assert issubclass(NoChoiceTokens, ValueError)


@pytest.mark.parametrize("logprob", [math.nan, math.inf, 0.5])
def test_impossible_logprobs_are_refused(logprob: float) -> None:
    with pytest.raises(ValueError, match="logprob"):
        distribution_from_logprobs({"3": -0.5, "4": logprob}, RATING_CHOICES)


def test_a_logprob_of_zero_is_certainty() -> None:
    assert close(distribution_from_logprobs({"5": 0.0}, RATING_CHOICES), [0, 0, 0, 0, 0, 1])
    assert close(distribution_from_logprobs({"5": 1e-7}, RATING_CHOICES), [0, 0, 0, 0, 0, 1])  # rounding noise


def test_softmax_from_logits_by_hand() -> None:
    # logits 0, ln 2, ln 3 -> weights 1, 2, 3 -> 1/6, 2/6, 3/6
    assert close(distribution_from_logits([0.0, math.log(2), math.log(3)]), [1 / 6, 2 / 6, 3 / 6])
    # Shifting every logit changes nothing; huge logits do not overflow.
    assert close(distribution_from_logits([1000.0, 1000.0 + math.log(2), 1000.0 + math.log(3)]), [1 / 6, 2 / 6, 3 / 6])
    assert close(distribution_from_logits([-1000.0, -1000.0]), [0.5, 0.5])
    # Six logits, "4" two nats above the rest: p4 = e^2 / (5 + e^2), others 1 / (5 + e^2).
    levels = distribution_from_logits([0.0, 0.0, 0.0, 0.0, 2.0, 0.0])
    z = 5 + math.e**2
    assert close(levels, [1 / z, 1 / z, 1 / z, 1 / z, math.e**2 / z, 1 / z])
    # raw = (0 + 1 + 2 + 3 + 5) / z + 4 e^2 / z = (11 + 4 e^2) / z
    assert math.isclose(expected_rating(levels)[0], (11 + 4 * math.e**2) / z, abs_tol=TOL)


@pytest.mark.parametrize("logits", [[], [0.0, math.nan], [0.0, math.inf], [-math.inf, 0.0]])
def test_softmax_refuses_empty_and_non_finite(logits: list[float]) -> None:
    with pytest.raises(ValueError):
        distribution_from_logits(logits)


def test_debiased_preference() -> None:
    # Asked with a shown first: P("A") = 0.8; with a shown second: P("B") = 0.6 -> (0.8 + 0.6) / 2 = 0.7.
    assert math.isclose(debiased_preference(0.8, 0.6), 0.7, abs_tol=TOL)
    # A judge that always says "A" (pure position bias) learns nothing about a or b: 0.5.
    assert debiased_preference(1.0, 0.0) == 0.5
    # Swapping a and b: P'("A" when b first) = 1 - P("B" when a second), and so on: the result flips.
    p_first, p_second = 0.9, 0.55
    assert math.isclose(debiased_preference(1 - p_second, 1 - p_first), 1 - debiased_preference(p_first, p_second))


@pytest.mark.parametrize(
    ("p_a", "margin", "want"),
    [(0.5, 0.0, "tie"), (0.51, 0.0, "a"), (0.49, 0.0, "b"), (0.54, 0.05, "tie"), (0.46, 0.05, "tie"),
     (0.56, 0.05, "a"), (0.44, 0.05, "b"), (0.75, 0.25, "tie"), (0.25, 0.25, "tie"), (1.0, 0.25, "a"),
     (0.0, 0.5, "tie")],
)  # fmt: skip
def test_verdict(p_a: float, margin: float, want: str) -> None:
    # |p_a - 0.5| <= margin is a tie (0.75 and 0.25 are exact in binary: the boundary belongs to the tie).
    assert verdict(p_a, margin) == want

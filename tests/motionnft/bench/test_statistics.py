"""Tests of motionnft.bench.statistics: the paired bootstrap interval of a mean score change."""

from __future__ import annotations

import math

import numpy as np
import pytest

from motionnft.bench.statistics import mean_delta, paired_bootstrap_ci


def test_mean_delta_by_hand() -> None:
    # deltas (2 - 1, 2 - 2, 5 - 3) = (1, 0, 2): mean 1
    assert mean_delta([1.0, 2.0, 3.0], [2.0, 2.0, 5.0]) == pytest.approx(1.0)


def test_large_shifted_sample_contains_the_true_delta_and_excludes_zero() -> None:
    rng = np.random.default_rng(1)
    before = rng.normal(3.8, 0.6, size=1000)
    after = before + 0.3 + rng.normal(0.0, 0.5, size=1000)  # true mean delta 0.3
    low, high = paired_bootstrap_ci(before.tolist(), after.tolist())
    assert low < 0.3 < high
    assert low > 0.0  # a clear improvement
    assert low < mean_delta(before.tolist(), after.tolist()) < high
    assert high - low < 0.1  # about 2 * 1.96 * 0.5 / sqrt(1000) = 0.062


def test_pure_noise_includes_zero() -> None:
    rng = np.random.default_rng(7)
    before = rng.normal(50.0, 10.0, size=100)
    after = rng.normal(50.0, 10.0, size=100)
    low, high = paired_bootstrap_ci(before, after, seed=3)
    assert low < 0.0 < high


def test_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(0)
    before, after = rng.random(30).tolist(), rng.random(30).tolist()
    first = paired_bootstrap_ci(before, after, seed=5)
    assert paired_bootstrap_ci(before, after, seed=5) == first
    assert paired_bootstrap_ci(before, after, seed=6) != first
    narrow = paired_bootstrap_ci(before, after, seed=5, confidence=0.5)
    assert first[0] < narrow[0] < narrow[1] < first[1]


def test_constant_delta_gives_a_point_interval() -> None:
    assert paired_bootstrap_ci([1.0, 2.0, 3.0], [1.5, 2.5, 3.5], n_resamples=50) == pytest.approx((0.5, 0.5))


@pytest.mark.parametrize(
    ("before", "after", "kwargs"),
    [
        ([1.0, 2.0], [1.0], {}),
        ([1.0], [2.0], {}),
        ([1.0, math.nan], [1.0, 2.0], {}),
        ([1.0, 2.0], [1.0, 2.0], {"confidence": 1.0}),
        ([1.0, 2.0], [1.0, 2.0], {"n_resamples": 0}),
    ],
)
def test_guards(before: list[float], after: list[float], kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        paired_bootstrap_ci(before, after, **kwargs)  # type: ignore[arg-type]

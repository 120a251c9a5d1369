"""Paired statistics for MotionEdit-Bench comparisons: the mean change of a per-item score and its
bootstrap confidence interval (numbers in, numbers out).

``before`` and ``after`` are per-item scores of one metric (e.g. Overall 0-5 or MAS 0-100) on the
same bench items in the same order, for two models or two checkpoints; deltas are after - before
in the metric's own units.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Scores = Sequence[float] | np.ndarray
"""Per-item scores: a flat sequence of numbers or a 1-D numpy array."""


def mean_delta(before: Scores, after: Scores) -> float:
    """mean(after - before) over paired items."""
    return float(_deltas(before, after).mean())


def paired_bootstrap_ci(
    before: Scores,
    after: Scores,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) of mean(after - before).

    Each of ``n_resamples`` resamples draws len(before) items with replacement, keeping each item's
    pair together, and takes the mean delta; the interval is the (1 - confidence) / 2 and
    (1 + confidence) / 2 percentiles of those means. Deterministic for a given ``seed``
    (numpy.random.default_rng).
    """
    return _percentile_interval(_deltas(before, after), None, n_resamples, confidence, seed)


def _deltas(before: Scores, after: Scores) -> np.ndarray:
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after, dtype=np.float64)
    if b.ndim != 1 or a.ndim != 1:
        raise ValueError("before and after must be flat sequences of numbers")
    if b.size != a.size:
        raise ValueError(f"before and after must pair up: {b.size} vs {a.size} items")
    if b.size < 2:
        raise ValueError(f"need at least 2 paired items, got {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores must be finite")
    return a - b


def bootstrap_mean_ci(
    values: Scores,
    weights: Scores | None = None,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) of one model's mean over items.

    With ``weights`` the statistic is the weighted mean sum(w * v) / sum(w) (a Win Rate pooled over
    an item's several comparisons); items are resampled with their weights. Needs >= 2 items.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    if v.ndim != 1 or v.shape != w.shape:
        raise ValueError("values and weights must be flat and of one length")
    if v.size < 2:
        raise ValueError(f"need at least 2 items, got {v.size}")
    if not (np.isfinite(v).all() and np.isfinite(w).all()) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("values must be finite and weights finite, >= 0 and not all 0")
    return _percentile_interval(v, None if weights is None else w, n_resamples, confidence, seed)


def _percentile_interval(
    v: np.ndarray, w: np.ndarray | None, n_resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """The percentile interval of the (weighted) mean of `v` over `n_resamples` item resamples."""
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    # Chunked so a large bench (1,015 items) times 2,000 resamples stays a few MB of indices.
    chunk = max(1, 2_000_000 // v.size)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, v.size, size=(stop - start, v.size))
        if w is None:
            means[start:stop] = v[idx].mean(axis=1)
            continue
        total = w[idx].sum(axis=1)
        # A resample of only zero-weight items has no comparisons: it counts at the overall mean.
        means[start:stop] = np.where(total > 0, (w[idx] * v[idx]).sum(axis=1) / np.maximum(total, 1e-300),
                                     (w * v).sum() / w.sum())  # fmt: skip
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)

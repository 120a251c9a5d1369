"""From per-item scores to a bench result: means, Win Rate, intervals, categories (numbers in, numbers out).

Win Rate (docs/method.md section 6): every model is compared with every other on every item both
scored; a win counts 1, a tie 1/2. With `outcomes` None the comparison is the paper's: the higher
Overall wins (equal within 1e-9 is a tie); otherwise `outcomes` holds the judge's verdicts. A model's
Win Rate is its share of all its comparisons, in percent; an item's is the share on that item.
Missing and failed items take part in nothing: they are counted, never scored 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np

from motionnft.bench.statistics import bootstrap_mean_ci, paired_bootstrap_ci
from motionnft.contracts.bench import METRICS, CategorySummary, ItemScores, ModelSummary

Outcomes = Mapping[tuple[str, str, str], float]
"""(item, model a, model b) -> a's outcome against b (1 win, 0.5 tie, 0 loss); one order is enough."""
TIE = 1e-9
NO_CATEGORY = "(none)"


def with_win_rates(scores: Sequence[ItemScores], models: Sequence[str], outcomes: Outcomes | None) -> list[ItemScores]:
    """`scores` with each scored item's `win_rate` (percent of that item's comparisons won) filled in."""
    wins, counts = _item_wins(scores, models, outcomes)
    out = []
    for s in scores:
        key = (s.item, s.model)
        rate = 100.0 * wins[key] / counts[key] if counts.get(key) else None
        out.append(s.model_copy(update={"win_rate": rate}))
    return out


def summarise(scores: Sequence[ItemScores], models: Sequence[str], outcomes: Outcomes | None,
              seed: int = 0) -> tuple[dict[str, ModelSummary], dict[str, dict[str, tuple[float, float]]]]:  # fmt: skip
    """Per-model summaries and, for every pair "A|B" (A before B in `models`), the paired 95%
    interval of mean(A - B) per metric over the items both scored."""
    wins, counts = _item_wins(scores, models, outcomes)
    by_model = {m: [s for s in scores if s.model == m] for m in models}
    summaries = {m: _model_summary(by_model[m], wins, counts, seed) for m in models}
    pairs: dict[str, dict[str, tuple[float, float]]] = {}
    for a, b in combinations(models, 2):
        scored_a = {s.item: s for s in by_model[a] if s.status == "scored"}
        both = [(scored_a[s.item], s) for s in by_model[b] if s.status == "scored" and s.item in scored_a]
        intervals = {}
        for metric in METRICS:
            values = [(_value(x, metric, wins, counts), _value(y, metric, wins, counts)) for x, y in both]
            values = [(x, y) for x, y in values if x is not None and y is not None]
            if len(values) >= 2:
                va, vb = zip(*values, strict=True)
                intervals[metric] = paired_bootstrap_ci(vb, va, seed=seed)
        pairs[f"{a}|{b}"] = intervals
    return summaries, pairs


def _item_wins(scores: Sequence[ItemScores], models: Sequence[str], outcomes: Outcomes | None
               ) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], int]]:  # fmt: skip
    """(item, model) -> summed outcome and number of comparisons on that item."""
    scored = {(s.item, s.model): s for s in scores if s.status == "scored"}
    items = list(dict.fromkeys(s.item for s in scores))
    wins: dict[tuple[str, str], float] = {}
    counts: dict[tuple[str, str], int] = {}
    for item in items:
        for a, b in combinations(models, 2):
            if (item, a) not in scored or (item, b) not in scored:
                continue
            outcome = _outcome(scored[(item, a)], scored[(item, b)], outcomes)
            if outcome is None:  # the judge could not compare this pair
                continue
            for model, won in ((a, outcome), (b, 1.0 - outcome)):
                wins[(item, model)] = wins.get((item, model), 0.0) + won
                counts[(item, model)] = counts.get((item, model), 0) + 1
    return wins, counts


def _outcome(a: ItemScores, b: ItemScores, outcomes: Outcomes | None) -> float | None:
    if outcomes is not None:
        if (a.item, a.model, b.model) in outcomes:
            return outcomes[(a.item, a.model, b.model)]
        reverse = outcomes.get((a.item, b.model, a.model))
        return None if reverse is None else 1.0 - reverse
    assert a.overall is not None and b.overall is not None, "scored items have an overall"
    if abs(a.overall - b.overall) <= TIE:
        return 0.5
    return 1.0 if a.overall > b.overall else 0.0


def _value(s: ItemScores, metric: str, wins: Mapping[tuple[str, str], float],
           counts: Mapping[tuple[str, str], int]) -> float | None:  # fmt: skip
    if metric == "win_rate":
        count = counts.get((s.item, s.model), 0)
        return 100.0 * wins[(s.item, s.model)] / count if count else None
    value = getattr(s, metric)
    return None if value is None else float(value)


def _model_summary(scores: Sequence[ItemScores], wins: Mapping[tuple[str, str], float],
                   counts: Mapping[tuple[str, str], int], seed: int) -> ModelSummary:  # fmt: skip
    scored = [s for s in scores if s.status == "scored"]
    means, ci95 = _means(scored, wins, counts, seed)
    per_category = {}
    for category in dict.fromkeys(s.category or NO_CATEGORY for s in scored):
        members = [s for s in scored if (s.category or NO_CATEGORY) == category]
        per_category[category] = CategorySummary(n=len(members), **_means(members, wins, counts, None)[0])
    return ModelSummary(n=len(scored), missing=sum(s.status == "missing" for s in scores),
                        failed=sum(s.status == "failed" for s in scores), **means, ci95=ci95,
                        per_category=per_category)  # fmt: skip


def _means(scored: Sequence[ItemScores], wins: Mapping[tuple[str, str], float], counts: Mapping[tuple[str, str], int],
           seed: int | None) -> tuple[dict[str, float | None], dict[str, tuple[float, float]]]:  # fmt: skip
    """Metric -> mean over `scored` (None where no item has it), and its interval when `seed` is given."""
    means: dict[str, float | None] = {}
    ci95: dict[str, tuple[float, float]] = {}
    for metric in METRICS:
        if metric == "win_rate":  # pooled: the share of all comparisons, items weighted by their count
            weights = np.array([counts.get((s.item, s.model), 0) for s in scored], dtype=np.float64)
            rates = np.array([_value(s, metric, wins, counts) or 0.0 for s in scored], dtype=np.float64)
        else:
            values = [float(getattr(s, metric)) for s in scored if getattr(s, metric) is not None]
            rates, weights = np.array(values, dtype=np.float64), np.ones(len(values))
        if weights.sum() <= 0:
            means[metric] = None
            continue
        means[metric] = float((rates * weights).sum() / weights.sum())
        if seed is not None and len(rates) >= 2:
            ci95[metric] = bootstrap_mean_ci(rates, weights, seed=seed)
    return means, ci95

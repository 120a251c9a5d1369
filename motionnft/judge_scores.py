"""Pure arithmetic of the MLLM judge (docs/method.md sections 3 and 6): choice distributions to scores.

A judge answers with one token. Its score is read from that token's distribution, not from sampled
text: the probabilities of the answer choices ("0".."5" for a rating, "A"/"B" for a comparison,
"Yes"/"No" for a curation criterion, "1".."6" for a motion category), renormalised over the
choices, then an expected value (a rating) or read as it is. Two sources give the distribution:
- local models: logits of the choice tokens -> softmax over those logits alone;
- OpenAI-compatible servers: top_logprobs of the first token -> exp, renormalised over the choices
  that appear (a choice missing from top_logprobs has a probability below all listed tokens; it is
  taken as 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from motionnft.contracts.judge import MOTION_CATEGORIES

RATING_CHOICES: tuple[str, ...] = ("0", "1", "2", "3", "4", "5")
COMPARE_CHOICES: tuple[str, ...] = ("A", "B")
YESNO_CHOICES: tuple[str, ...] = ("Yes", "No")
CATEGORY_CHOICES: tuple[str, ...] = tuple(str(k) for k in range(1, len(MOTION_CATEGORIES) + 1))
"""The number of each of MOTION_CATEGORIES, in order, as the curation prompt lists them."""


class NoChoiceTokens(ValueError):
    """None of the answer choices is among the returned tokens: there is no score to read."""


def distribution_from_logprobs(top_logprobs: Mapping[str, float], choices: Sequence[str]) -> list[float]:
    """Probabilities of `choices` (same order) from token -> logprob, renormalised over those present.

    Token text is compared after stripping surrounding whitespace (" 4" and "4" are the same answer);
    when several tokens map to one choice their probabilities add up.
    Raises NoChoiceTokens when no choice is present, ValueError on a non-finite or positive logprob.
    """
    mass = dict.fromkeys(choices, 0.0)
    for token, logprob in top_logprobs.items():
        if not math.isfinite(logprob) and logprob != -math.inf:
            raise ValueError(f"logprob of {token!r} is {logprob}")
        if logprob > 1e-6:
            raise ValueError(f"logprob of {token!r} is positive ({logprob})")
        key = token.strip()
        if key in mass:
            mass[key] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0.0:
        raise NoChoiceTokens(f"none of {list(choices)} among the answer's top tokens {list(top_logprobs)[:10]}")
    return [mass[c] / total for c in choices]


def distribution_from_logits(logits: Sequence[float]) -> list[float]:
    """Softmax over the choice tokens' logits alone (numerically stable)."""
    if not logits:
        raise NoChoiceTokens("no logits")
    if not all(math.isfinite(x) for x in logits):
        raise ValueError("logits must be finite")
    peak = max(logits)
    weights = [math.exp(x - peak) for x in logits]
    total = sum(weights)
    return [w / total for w in weights]


def expected_rating(levels: Sequence[float]) -> tuple[float, float]:
    """(raw, score): raw = sum_k p_k * k on the 0..(n-1) scale, score = raw / (n-1) in [0, 1]."""
    top = len(levels) - 1
    raw = sum(k * p for k, p in enumerate(levels))
    return raw, raw / top


def debiased_preference(p_a_first: float, p_a_second: float) -> float:
    """P(a is better) with position bias removed: the mean of asking with a shown first and second.

    `p_a_first` is P("A") when a is shown as A; `p_a_second` is P("B") when a is shown as B.
    """
    return 0.5 * (p_a_first + p_a_second)


def verdict(p_a: float, tie_margin: float) -> str:
    """'a', 'b', or 'tie' when |p_a - 0.5| <= tie_margin."""
    if abs(p_a - 0.5) <= tie_margin:
        return "tie"
    return "a" if p_a > 0.5 else "b"

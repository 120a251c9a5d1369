"""Per-item scores kept in the output folder, so a rerun or an added model scores only what is new.

Two append-only jsonl files under `OUT/cache/`: `scores.jsonl` (one line per scored edit) and
`compare.jsonl` (one line per judged pair). A line is keyed by what decides its numbers: the item,
the edit's content hash (so a re-rendered edit is scored again) and the versions of the flow
backend, reward, judge model and rubrics (so numbers from two definitions never mix). Only
successes are kept: a failure is tried again next time. A torn last line (a killed run) is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("motionnft.bench")


def version_tag(*parts: str) -> str:
    """A short stable tag of the versions that produced a number."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class ScoreCache:
    """Scores by (item, edit sha256) and comparisons by (item, sha a, sha b), under one version tag each."""

    def __init__(self, folder: Path, score_tag: str, compare_tag: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.score_tag, self.compare_tag = score_tag, compare_tag
        self._scores_path, self._compare_path = folder / "scores.jsonl", folder / "compare.jsonl"
        self.scores = {(r["item"], r["sha256"]): r for r in _read(self._scores_path) if r.get("tag") == score_tag}
        self.comparisons = {
            (r["item"], r["a"], r["b"]): float(r["outcome"])
            for r in _read(self._compare_path)
            if r.get("tag") == compare_tag
        }

    def score(self, item: str, sha256: str) -> dict[str, Any] | None:
        return self.scores.get((item, sha256))

    def put_score(self, item: str, sha256: str, metrics: dict[str, float]) -> None:
        record = {"tag": self.score_tag, "item": item, "sha256": sha256, **metrics}
        self.scores[(item, sha256)] = record
        _append(self._scores_path, record)

    def outcome(self, item: str, sha_a: str, sha_b: str) -> float | None:
        """a's outcome against b (1 win, 0.5 tie, 0 loss), either order looked up."""
        if (item, sha_a, sha_b) in self.comparisons:
            return self.comparisons[(item, sha_a, sha_b)]
        if (item, sha_b, sha_a) in self.comparisons:
            return 1.0 - self.comparisons[(item, sha_b, sha_a)]
        return None

    def put_outcome(self, item: str, sha_a: str, sha_b: str, outcome: float) -> None:
        self.comparisons[(item, sha_a, sha_b)] = outcome
        _append(self._compare_path, {"tag": self.compare_tag, "item": item, "a": sha_a, "b": sha_b, "outcome": outcome})


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s:%d: unreadable cache line skipped (a run killed mid-write?)", path, number)
    return records


def _append(path: Path, record: dict[str, Any]) -> None:
    # One write per line: a kill leaves at most one torn last line, which _read skips.
    with path.open("a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")

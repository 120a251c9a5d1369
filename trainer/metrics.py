"""Run metrics: one JSON object per line in `<run_dir>/metrics.jsonl`, and named, timed stages.

Every epoch's line holds the reward components, loss terms, drop counts, banned prompts and the
seconds each stage took, so `motionnft plot RUN_DIR` can draw the curves from the file alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class StageTimer:
    """`with timer.stage("sample"): ...` records wall seconds per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


class MetricsLog:
    """Appends one JSON line per record; reopening continues the same file (resumed runs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def keep_until(self, epoch: int) -> None:
        """Drop records past `epoch`: a resumed run rewrites the epochs after its checkpoint."""
        kept = [r for r in self.read() if r.get("epoch", 0) <= epoch]
        self.path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

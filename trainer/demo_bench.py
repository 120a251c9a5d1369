"""The demo's last step: MotionEdit-Bench on its held-out pairs, the base policy against the trained run.

`motionnft bench generate` twice (the preset's base weights as `before`, the run's EMA as `after`,
rendered in this process: the training's Ray is down by now) and `motionnft bench score` with its
own services on loopback, into `<run>/bench/`: `edits/{before,after}/`, results.json, report.md and
index.html.
"""

from __future__ import annotations

import logging
from pathlib import Path

from motionnft.bench.run import ScoreJob, ScoreRun, run_score
from motionnft.data.formats import load_dataset
from trainer.bench_sources import resolve_source
from workers.bench_generate import generate_bench

MODELS = ("before", "after")


def bench_before_after(config_path: Path, run_dir: Path, eval_path: Path, size: int) -> ScoreRun:
    """Render the held-out pairs with both policies and score them; returns the scored run."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the demo's log
    records = load_dataset(eval_path)
    edits = run_dir / "bench" / "edits"
    specs = {"before": str(config_path), "after": str(run_dir)}
    for name in MODELS:
        source = resolve_source(specs[name], size=size)
        summary = generate_bench(records, source, edits / name, use_ray=False, progress=False)
        if summary.failed:
            raise RuntimeError(f"{len(summary.failed)} bench items failed to render; see {edits / name}")
    return run_score(ScoreJob(eval_path, {name: edits / name for name in MODELS}, run_dir / "bench"))

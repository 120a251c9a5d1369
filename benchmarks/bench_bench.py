"""`make bench-bench`: what scoring MotionEdit-Bench costs on this machine, in one run.

A synthetic bench of the real bench's size (1,015 items, `motionnft data synth`) with four models
of known quality (`motionnft.bench.known`: target, half, none, shuffled), scored by `motionnft bench
score`'s own function against services it starts on loopback with their defaults (reward API: OpenCV
DIS on CPU; judge: the weight-free `similarity` stand-in). Reported: wall time, item scores per
second, the seconds spent waiting on the reward API (flows + MAS), on the judge and on files (summed
over the items in flight, so they exceed the wall time when calls overlap), the time to write the
HTML page, and a second run on the same folder, where every score comes from the cache.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from benchmarks.report import machine_description, markdown_table, write_section
from motionnft.bench.known import write_known_models
from motionnft.bench.run import ScoreJob, ScoreRun, run_score
from motionnft.data.synth import generate
from motionnft.data.synth_io import write_dataset

SECTION = "bench-bench"
MODELS = ("target", "half", "none", "shuffled")


def measure(items: int, size: int, concurrency: int, work: Path) -> tuple[ScoreRun, ScoreRun, ScoreRun, float]:
    """(scored without pictures, the same again from the cache, with flow pictures) and the data time."""
    started = time.perf_counter()
    pairs = generate(items, 0, size)
    manifest = write_dataset(pairs, work / "bench", "bench.jsonl", progress=False)
    models = write_known_models(pairs, work / "models", 0, size, MODELS)
    data_s = time.perf_counter() - started
    job = ScoreJob(manifest, models, work / "out", concurrency=concurrency, draw_flows=False)
    cold = run_score(job)
    cached = run_score(job)
    pictured = run_score(ScoreJob(manifest, models, work / "out", concurrency=concurrency, draw_flows=True))
    return cold, cached, pictured, data_s


def report(cold: ScoreRun, cached: ScoreRun, pictured: ScoreRun, items: int, size: int, concurrency: int,
           data_s: float) -> str:  # fmt: skip
    scores = len(cold.results.items)
    busy = cold.busy
    rows = [
        ["score (cold: every item through both services)", f"{cold.wall_s:.1f}", f"{scores / cold.wall_s:.1f}"],
        ["score again (every item from OUT/cache)", f"{cached.wall_s:.1f}", f"{scores / cached.wall_s:.1f}"],
        ["score from the cache + index.html with flow pictures", f"{pictured.wall_s:.1f}",
         f"{scores / pictured.wall_s:.1f}"],
    ]  # fmt: skip
    split = [
        ["reward API calls (decode, DIS flows, MAS)", f"{busy.reward_s:.1f}"],
        ["judge calls (3 rubrics)", f"{busy.judge_s:.1f}"],
        ["files (bench decode, outputs read)", f"{busy.io_s:.1f}"],
    ]
    means = ", ".join(f"{m} {cold.results.models[m].mas:.1f} / {cold.results.models[m].win_rate:.1f}"
                      for m in MODELS)  # fmt: skip
    return "\n".join([
        "## Scoring MotionEdit-Bench (bench-bench)", "",
        f"Machine: {machine_description('cpu')}. {items} synthetic items at {size}x{size} x {len(MODELS)} models "
        f"= {scores} item scores, {concurrency} items in flight; reward API with OpenCV DIS (medium, 1 thread), "
        f"judge `similarity` (SSIM, not a language model), both started on loopback by the command. "
        f"Making the bench and the four models' PNGs took {data_s:.1f} s (not counted).", "",
        markdown_table(["run", "wall s", "item scores / s"], rows), "",
        "Where the cold run waited (seconds summed over the items in flight, so they add up to more than "
        "the wall time when the two services work at once):", "",
        markdown_table(["waiting on", "s"], split), "",
        f"Known-quality check (MAS / Win Rate %): {means}.",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--items", type=int, default=1015)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-bench-") as work:
        cold, cached, pictured, data_s = measure(args.items, args.size, args.concurrency, Path(work))
    body = report(cold, cached, pictured, args.items, args.size, args.concurrency, data_s)
    write_section(args.out, SECTION, body)
    print(body)


if __name__ == "__main__":
    main()

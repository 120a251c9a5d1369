"""The demo's ablations side by side (the paper's Table 4 shape and two more), one table in docs/benchmarks.md.

Each ablation is `python -m trainer.demo --ablation NAME` (trainer.demo.ABLATIONS) with the same data,
seed and epochs, run one after another in its own process (its own Ray and services), without the
MotionEdit-Bench step. The table gives each run's change on the held-out pairs, after - before, with
the paired bootstrap 95% interval.

    python -m benchmarks.bench_ablations --out docs/benchmarks.md [--epochs 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.report import machine_description, markdown_table, write_section
from trainer.demo import ABLATIONS

MEANING = {
    "method": "rewards 0.5 / 0.5, continuous motion signal, both NFT branches (the demo as it ships)",
    "motion-only": "reward weights motion 1 / judge 0",
    "judge-only": "reward weights motion 0 / judge 1",
    "six-level": "the six-level motion reward instead of its continuous value",
    "no-negative": "NFT without the negative branch (positive term only)",
}


def run(name: str, epochs: int, runs: Path) -> dict:
    """One ablation's demo run; returns its summary.json plus the wall time."""
    run_dir = runs / name
    command = [sys.executable, "-m", "trainer.demo", "--ablation", name, "--skip-bench", "--run-dir", str(run_dir),
               "--set", f"run.epochs={epochs}", "--set", f"run.eval_every={epochs}",
               "--set", f"run.checkpoint_every={epochs}"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
    summary = json.loads((run_dir / "summary.json").read_text())
    return summary | {"wall": time.perf_counter() - started}


def cell(summary: dict, metric: str, digits: int) -> str:
    low, high = summary["delta_ci95"][metric]
    change = summary["after"][metric] - summary["before"][metric]
    return f"{change:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--runs", type=Path, default=Path("runs/ablations"))
    parser.add_argument("--only", nargs="*", default=list(ABLATIONS), choices=list(ABLATIONS))
    args = parser.parse_args()
    rows = []
    for name in args.only:
        s = run(name, args.epochs, args.runs)
        rows.append([f"`{name}`", MEANING[name], cell(s, "mas", 2), cell(s, "motion_reward", 3), cell(s, "judge", 3),
                     cell(s, "scene_psnr", 3), f"{s['wall']:.0f}"])  # fmt: skip
        print(rows[-1], flush=True)
    body = f"""## Ablations of the demo (bench-ablations)

`make bench-ablations` (benchmarks/bench_ablations.py), {machine_description("cpu")}, one run each, one
after another: `python -m trainer.demo --ablation NAME` for {args.epochs} epochs, same data and seed, no
bench step. Change on the {s["pairs"]} held-out pairs, after - before, with the paired bootstrap 95%
interval; scene_psnr is the PSNR (dB) to the input where the true motion changes nothing.

{markdown_table(["ablation", "what changes", "MAS", "motion reward", "judge", "scene_psnr", "wall s"], rows)}
"""
    write_section(args.out, "bench-ablations", body)
    print(body)


if __name__ == "__main__":
    main()

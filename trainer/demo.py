"""`make demo`: the whole MotionNFT loop on one machine with no GPU and no weights.

Generates the synthetic dataset, starts the reward API (CPU flow) and the judge (`similarity`
backend) on free localhost ports, trains the committed tiny policy with `configs/demo_cpu.yaml`
(local Ray; `--config configs/demo_cpu_qwen.yaml` trains the tiny Qwen-Image-Edit instead), and
writes to the run directory (`runs/<run.name>` unless given): `summary.json` (before/after motion reward, MAS and
judge score, overall and per category, with paired-bootstrap 95% intervals of after - before, and
per category intervals widened for the number of categories, `per_category_ci`),
`grid.png` (input, target, before, after, rows chosen before training), `before_after.gif`,
`flows.png` (flows of input -> target, before and after), `curves.png`, the metrics, and `bench/` (MotionEdit-Bench
on the held-out pairs, base policy against the trained run: results.json, report.md, index.html).
Every process it starts is stopped on success, failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from motionnft.bench.statistics import paired_bootstrap_ci
from motionnft.data.synth import generate, split, write_dataset
from motionnft.progress import StepProgress
from motionnft.stack import MLLM_JUDGE, REWARD_API, LocalStack
from trainer.config import ConfigError, load_config
from trainer.demo_bench import bench_before_after
from trainer.demo_pictures import demo_rows, save_animation, save_flow_grid, saved_evaluations, scene_psnr
from trainer.grid import save_grid
from trainer.loop import train
from trainer.metrics import MetricsLog
from trainer.plots import plot_run

log = logging.getLogger("motionnft.demo")
METRICS = ("motion_reward", "mas", "judge")
REPORTED = (*METRICS, "scene_psnr")  # scene_psnr: PSNR (dB) to the input where the true motion changes nothing
# The demo's steps; the before and after evaluations are the epoch bar's first and last "evaluate".
STAGES = ("data", "services", "train", "summary", "pictures", "bench")


def stage_seconds(epochs: int, eval_every: int, bench: bool = True) -> list[float]:
    """Expected wall seconds of each of STAGES (without "bench" when ``bench`` is False), as measured
    on 2 CPU cores: the demo bar's ETA weights, so that training is not counted as one step in six.
    Training: Ray and the actors' start, 9.5 s an epoch and 22 s an evaluation (one before training,
    one every ``eval_every`` epochs and one after the last)."""
    evaluations = 1 + -(-epochs // eval_every)
    seconds = [3.0, 4.0, 10.0 + 9.5 * epochs + 22.0 * evaluations, 2.0, 5.0, 30.0]
    return seconds if bench else seconds[:-1]


# The ablations people ask about (docs/benchmarks.md): the same demo with one thing changed. "method" is
# the demo as it ships (rewards 0.5/0.5, the continuous motion signal, both NFT branches).
ABLATIONS: dict[str, list[str]] = {
    "method": [],
    "motion-only": ["reward.weights={motion: 1.0, judge: 0.0}"],
    "judge-only": ["reward.weights={motion: 0.0, judge: 1.0}"],
    "six-level": ["reward.motion_signal=six_level"],
    "no-negative": ["nft.negative_branch=false"],
}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def make_data(data_dir: Path, n: int, seed: int, eval_fraction: float) -> tuple[Path, Path]:
    pairs = generate(n, seed, 64)
    train_pairs, eval_pairs = split(pairs, eval_fraction, seed)
    return write_dataset(train_pairs, data_dir, "train.jsonl"), write_dataset(eval_pairs, data_dir, "eval.jsonl")


def summarise(run_dir: Path) -> dict[str, Any]:
    """before = the evaluation at epoch 0, after = the last one; paired bootstrap over held-out items."""
    evals = [r for r in MetricsLog(run_dir / "metrics.jsonl").read() if "eval" in r]
    before, after = evals[0]["eval"], evals[-1]["eval"]
    shared = {i["id"] for i in before["items"]} & {i["id"] for i in after["items"]}
    b = {i["id"]: i for i in before["items"] if i["id"] in shared}
    a = {i["id"]: i for i in after["items"] if i["id"] in shared}
    ids = sorted(shared)
    delta = {m: list(paired_bootstrap_ci([b[i][m] for i in ids], [a[i][m] for i in ids])) for m in METRICS}

    by_category = category_intervals([b[i] for i in ids], [a[i] for i in ids])
    kept = scene_preservation(run_dir, ids)
    delta["scene_psnr"] = list(paired_bootstrap_ci(kept["before"], kept["after"]))

    def side(e: dict[str, Any], name: str) -> dict[str, Any]:
        return {
            **{m: e[m] for m in METRICS},
            "scene_psnr": float(np.mean(kept[name])),
            "per_category": e["per_category"],
        }

    return {"before": side(before, "before"), "after": side(after, "after"), "delta_ci95": delta,
            "per_category_ci": by_category, "pairs": len(ids), "epochs": evals[-1]["epoch"],
            "rows": demo_rows(before["items"])}  # fmt: skip


def category_intervals(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """Per category, the paired bootstrap interval of after - before for each metric.

    `before` and `after` are the same held-out items in the same order. The six categories are six
    looks at the data, so each interval is Bonferroni-widened (confidence 1 - 0.05 / categories) and
    a category counts as worse only when its whole interval is below zero.
    """
    categories = sorted({item["category"] for item in before})
    confidence = 1.0 - 0.05 / max(1, len(categories))
    out: dict[str, Any] = {"confidence": round(confidence, 4), "worse": [], "categories": {}}
    for category in categories:
        rows = [n for n, item in enumerate(before) if item["category"] == category]
        pairs = {m: ([before[n][m] for n in rows], [after[n][m] for n in rows]) for m in METRICS}
        intervals = {m: list(paired_bootstrap_ci(*pairs[m], confidence=confidence)) for m in METRICS}
        out["categories"][category] = {"pairs": len(rows), **intervals}
        out["worse"] += [f"{category}:{m}" for m, (_, high) in intervals.items() if high < 0]
    return out


def scene_preservation(run_dir: Path, ids: list[str]) -> dict[str, list[float]]:
    """Per held-out pair (``ids``, in order), how well the before and after edits keep the scene (PSNR, dB)."""
    first, last = saved_evaluations(run_dir)
    out: dict[str, list[float]] = {}
    for name, saved in (("before", first), ("after", last)):
        where = {str(i): n for n, i in enumerate(saved["ids"])}
        rows = [where[i] for i in ids]
        out[name] = [scene_psnr(saved["inputs"][r], saved["targets"][r], saved["edits"][r]) for r in rows]
    both = [n for n in range(len(ids)) if np.isfinite(out["before"][n]) and np.isfinite(out["after"][n])]
    return {name: [values[n] for n in both] for name, values in out.items()}  # pairs with no unmoved pixel: out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/demo_cpu.yaml"))
    parser.add_argument("--run-dir", type=Path, default=None, help="Default: $RUN_DIR, else runs/<run.name>.")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--pairs", type=int, default=400, help="Synthetic pairs (80%% train, 20%% held out).")
    parser.add_argument(
        "--ablation",
        choices=list(ABLATIONS),
        default="method",
        help="Change one thing (default: the method as it ships); the run goes to runs/<name>-<ablation>.",
    )
    parser.add_argument("--skip-bench", action="store_true", help="Stop after the pictures (no MotionEdit-Bench).")
    args = parser.parse_args(argv)
    changes = [*ABLATIONS[args.ablation], *args.overrides]
    try:  # a bad config or --set fails now, before any work
        run = load_config(args.config, changes).run
    except ConfigError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl-C
    started = time.perf_counter()
    # runs/demo for configs/demo_cpu.yaml, runs/demo-qwen for configs/demo_cpu_qwen.yaml: demos keep apart.
    suffix = "" if args.ablation == "method" else f"-{args.ablation}"
    run_dir = args.run_dir or Path(os.environ.get("RUN_DIR") or f"runs/{run.name}{suffix}")
    run_dir.mkdir(parents=True, exist_ok=True)
    weights = stage_seconds(run.epochs, run.eval_every, bench=not args.skip_bench)
    # The demo's own steps; the data writing and the epochs show their own progress under this one.
    with StepProgress("demo", total=len(weights), weights=weights, logger=log) as progress:
        progress.stage("data")
        train_path, eval_path = make_data(run_dir / "data", args.pairs, 0, 0.2)
        progress.advance({"pairs": args.pairs})
        base = [f"run.out_dir={run_dir}", f"data.train_path={train_path}", f"data.eval_path={eval_path}", *changes]
        run_with_services(args.config, base, run_dir, progress)
        progress.stage("summary")
        summary = summarise(run_dir) | {"wall_s": round(time.perf_counter() - started, 1)}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        progress.advance({"mas_before": summary["before"]["mas"], "mas_after": summary["after"]["mas"]})
        progress.stage("pictures")
        save_grid(run_dir, ids=summary["rows"])
        save_animation(run_dir, summary["rows"])
        save_flow_grid(run_dir, summary["rows"])
        plot_run(run_dir)
        progress.advance()
        if not args.skip_bench:
            progress.stage("bench")
            bench = bench_before_after(args.config, run_dir, eval_path, load_config(args.config, base).data.size)
            progress.advance({f"bench_{m}": "-" if s.overall is None else f"{s.overall:.2f}"
                              for m, s in bench.results.models.items()})  # fmt: skip
    print(table(summary))
    if not args.skip_bench:
        bench_dir = run_dir / "bench"
        print(f"MotionEdit-Bench, before vs after: {bench_dir / 'report.md'} and {bench_dir / 'index.html'}")


def run_with_services(config_path: Path, overrides: list[str], run_dir: Path, progress: StepProgress) -> None:
    """Start both services (ready before it returns), train against them; they stop however it ends.

    The services pick their own free ports, so the config is completed with their URLs here.
    """
    quiet = {"OMP_NUM_THREADS": "1"}  # logs go to run_dir/reward_api.log and run_dir/mllm_judge.log
    specs = [replace(REWARD_API, env={**quiet, "REWARD_API_FLOW_THREADS": "1"}), replace(MLLM_JUDGE, env=quiet)]
    progress.stage("services")
    with LocalStack(specs, log_dir=run_dir, ready_timeout_s=120, stop_timeout_s=20) as stack:
        urls = [f"reward.reward_url={stack.url(REWARD_API.name)}", f"reward.judge_url={stack.url(MLLM_JUDGE.name)}"]
        config = load_config(config_path, [*overrides, *urls])
        progress.advance()
        progress.stage("train")
        try:
            train(config, resume=False)
        finally:
            import ray

            ray.shutdown()
        progress.advance({"epochs": config.run.epochs})


def table(summary: dict[str, Any]) -> str:
    rows = [f"{'':<22}{'before':>10}{'after':>10}   after - before, 95% CI"]
    for m in REPORTED:
        low, high = summary["delta_ci95"][m]
        rows.append(f"{m:<22}{summary['before'][m]:>10.3f}{summary['after'][m]:>10.3f}   [{low:+.3f}, {high:+.3f}]")
    by_category = summary["per_category_ci"]
    widened = f"{by_category['confidence']:.2%} CI ({len(by_category['categories'])} looks)"
    rows.append(f"MAS per category{'':<6}{'before':>10}{'after':>10}   {widened}")
    for category, values in summary["after"]["per_category"].items():
        old = summary["before"]["per_category"][category]
        low, high = by_category["categories"][category]["mas"]
        rows.append(f"  {category:<20}{old['mas']:>10.2f}{values['mas']:>10.2f}   [{low:+.2f}, {high:+.2f}]")
    rows.append(f"categories significantly worse: {', '.join(by_category['worse']) or 'none'}")
    return "\n".join(rows)


if __name__ == "__main__":
    main()

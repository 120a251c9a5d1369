"""`make bench-pipeline`: the demo's training on-policy and with `run.pipeline`, side by side in one run.

Both runs take the demo's synthetic pairs (written once), configs/demo_cpu.yaml with the tiny policy
and the same epochs, each with its own fresh services (`trainer.demo.run_with_services`: reward API
on CPU DIS flows, judge `similarity`) and its own local Ray, one after the other. Reported from each
run's metrics.jsonl: seconds per epoch (the sum of its stage times; actor start-up and the epoch-0
evaluation are left out, they are the same in both), the stage times, the staleness seen, and the
held-out metrics of the last evaluation (trainer.evaluation: six-level motion reward, MAS, judge)
with the paired-bootstrap 95% interval of pipelined - on-policy over the held-out pairs.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.report import machine_description, markdown_table, write_section
from motionnft.bench.statistics import paired_bootstrap_ci
from motionnft.progress import StepProgress
from trainer.config import load_config
from trainer.demo import METRICS, make_data, run_with_services
from trainer.metrics import MetricsLog

SECTION = "bench-pipeline"
MODES = {"on_policy": False, "pipelined": True}  # run directory name -> run.pipeline
STAGES = ("sample", "advantages", "update", "sync", "evaluate", "checkpoint")


def epoch_summary(run_dir: Path) -> dict[str, Any]:
    """Seconds per epoch, mean seconds per stage and the staleness, from a run's metrics.jsonl."""
    records = [r for r in MetricsLog(run_dir / "metrics.jsonl").read() if "stage_s" in r]
    if not records:
        raise ValueError(f"{run_dir} has no finished epochs")
    seconds = [sum(r["stage_s"].values()) for r in records]
    stages = {s: statistics.fmean(r["stage_s"].get(s, 0.0) for r in records) for s in STAGES}
    return {
        "epochs": len(records),
        "total_s": sum(seconds),
        "mean_s": statistics.fmean(seconds),
        "median_s": statistics.median(seconds),
        "stage_s": stages,
        "max_staleness": max(r["staleness"] for r in records),
        "stale_epochs": sum(1 for r in records if r["staleness"] > 0),
    }


def held_out(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first (epoch 0) and the last evaluation of a run."""
    evals = [r for r in MetricsLog(run_dir / "metrics.jsonl").read() if "eval" in r]
    if len(evals) < 2:
        raise ValueError(f"{run_dir} needs an evaluation before and after training")
    return evals[0], evals[-1]


def report(on_policy: Path, pipelined: Path, context: str) -> str:
    """The benchmarks page's section for two finished runs of the same config and epochs."""
    times = {"on-policy": epoch_summary(on_policy), "pipelined": epoch_summary(pipelined)}
    if times["on-policy"]["epochs"] != times["pipelined"]["epochs"]:
        raise ValueError(f"the runs differ in epochs: {[t['epochs'] for t in times.values()]}")
    speed = times["on-policy"]["mean_s"] / times["pipelined"]["mean_s"]
    rows = [
        [mode, f"{t['mean_s']:.2f}", f"{t['median_s']:.2f}", f"{t['total_s']:.1f}",
         *(f"{t['stage_s'][s]:.2f}" for s in ("sample", "update", "sync", "evaluate")),
         f"{t['max_staleness']} ({t['stale_epochs']} of {t['epochs']} epochs)"]
        for mode, t in times.items()
    ]  # fmt: skip
    header = ["mode", "s/epoch (mean)", "s/epoch (median)", "epochs total s", "sample s", "update s", "sync s",
              "evaluate s", "max staleness"]  # fmt: skip
    (before, first), (_, second) = held_out(on_policy), held_out(pipelined)
    a = {i["id"]: i for i in first["eval"]["items"]}
    b = {i["id"]: i for i in second["eval"]["items"]}
    ids = sorted(a.keys() & b.keys())
    metric_rows = []
    for m in METRICS:
        low, high = paired_bootstrap_ci([a[i][m] for i in ids], [b[i][m] for i in ids])
        metric_rows.append([m, f"{before['eval'][m]:.3f}", f"{first['eval'][m]:.3f}", f"{second['eval'][m]:.3f}",
                            f"[{low:+.3f}, {high:+.3f}]"])  # fmt: skip
    metric_header = ["held-out metric", "before (epoch 0)", f"on-policy (epoch {first['epoch']})",
                     f"pipelined (epoch {second['epoch']})", "pipelined - on-policy, 95% CI"]  # fmt: skip
    return (
        f"## Pipelined epochs ({SECTION})\n\n{context}\n\n"
        f"{markdown_table(header, rows)}\n\n"
        f"Pipelined / on-policy time per epoch: {1 / speed:.2f} (a {speed:.2f}x speed-up). Stage columns are "
        "means per epoch; `sample` is the driver's wait for the rollout (pipelined: what the update did not "
        "cover).\n\n"
        f"{markdown_table(metric_header, metric_rows)}\n\n"
        f"{len(ids)} held-out pairs, one edit each with fixed seeds and the EMA weights."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/demo_cpu.yaml"))
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-pipeline"))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--pairs", type=int, default=400, help="Synthetic pairs (80%% train, 20%% held out).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Config overrides, both runs.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    started = time.perf_counter()
    train_path, eval_path = make_data(args.run_dir / "data", args.pairs, 0, 0.2)
    common = [f"data.train_path={train_path}", f"data.eval_path={eval_path}", *args.overrides]
    load_config(args.config, common)  # a bad --set fails before any service starts
    # Each run advances twice: its services ready, its training done.
    with StepProgress(SECTION, total=2 * len(MODES), logger=logging.getLogger(SECTION)) as progress:
        for name, pipeline in MODES.items():
            run_dir = args.run_dir / name
            overrides = [*common, f"run.out_dir={run_dir}", f"run.pipeline={str(pipeline).lower()}"]
            run_with_services(args.config, overrides, run_dir, progress)
    config = load_config(args.config, common)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip():
        commit += " + uncommitted changes"
    command = " ".join([Path(sys.executable).name, "-m", "benchmarks.bench_pipeline", *(argv or sys.argv[1:])])
    context = (
        f"Machine: {machine_description(config.policy.device)}. Commit {commit or 'uncommitted'}, "
        f"{time.strftime('%Y-%m-%d')}; both runs took {time.perf_counter() - started:.0f} s.\n"
        f"Command: `{command}`. `{args.config}`: {config.run.epochs} epochs of {config.data.prompts_per_epoch} "
        f"prompts x {config.data.samples_per_prompt} samples, {config.ray.num_rollout_actors} rollout actor(s) "
        f"and the learner on a local Ray ({config.ray.num_cpus} CPUs), evaluation every {config.run.eval_every} "
        f"and checkpoints every {config.run.checkpoint_every} epochs ({args.pairs} synthetic pairs)."
    )
    body = report(args.run_dir / "on_policy", args.run_dir / "pipelined", context)
    print(body)
    write_section(args.out, SECTION, body)


if __name__ == "__main__":
    main()

"""Pipelined epochs (`run.pipeline`) end to end: real services in threads, local Ray, the tiny policy.

Three-epoch runs: without pipelining every batch is sampled with the learner's current weights;
with it epochs 2 and 3 are sampled during the update before them, exactly one version stale, and
updated against the `old` that sampled them. A rollout actor killed while its pipelined rollout is
in flight stops the run with a checkpoint (holding that rollout's weights) from which the resumed
run ends exactly where the uninterrupted one did. The bench's report is written from the same runs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch

from benchmarks.bench_pipeline import SECTION, epoch_summary, report
from benchmarks.report import write_section
from motionnft.data.synth import generate, split, write_dataset
from services.mllm_judge.app import create_app as create_judge
from services.mllm_judge.settings import MllmJudgeSettings
from services.reward_api.app import create_app as create_reward
from services.reward_api.settings import RewardApiSettings
from tests.services.harness import in_thread
from trainer.checkpoints import latest_checkpoint, load_checkpoint
from trainer.config import TrainConfig, load_config
from trainer.loop import RunStopped, train
from trainer.metrics import MetricsLog
from trainer.pipeline import AHEAD_SAMPLING
from workers.policies.base import SAMPLING, TRAINABLE
from workers.policies.factory import TINY_CHECKPOINT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first"),
]
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo_cpu.yaml"
EPOCHS = 3
COMPARED = ("epoch", "reward", "loss", "sampled_versions", "learner_version", "staleness", "old_version")


@dataclass(frozen=True)
class Stack:
    train_path: Path
    eval_path: Path
    reward_url: str
    judge_url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The data and both services, shared by every run of this module."""
    train_pairs, eval_pairs = split(generate(24, 5, 64), 0.25, 5)
    out = tmp_path_factory.mktemp("synth")
    paths = write_dataset(train_pairs, out, "train.jsonl"), write_dataset(eval_pairs[:2], out, "eval.jsonl")
    with (
        in_thread(create_reward(RewardApiSettings(max_wait_ms=1.0, flow_threads=1))) as reward,
        in_thread(create_judge(MllmJudgeSettings())) as judge,
    ):
        yield Stack(*paths, reward, judge)


def config_for(stack: Stack, run_dir: Path, *, pipeline: bool) -> TrainConfig:
    overrides = [
        f"run.out_dir={run_dir}", f"run.epochs={EPOCHS}", "run.eval_every=100", f"run.checkpoint_every={EPOCHS}",
        f"run.pipeline={str(pipeline).lower()}", f"data.train_path={stack.train_path}",
        f"data.eval_path={stack.eval_path}", "data.prompts_per_epoch=2", "data.samples_per_prompt=4",
        f"reward.reward_url={stack.reward_url}", f"reward.judge_url={stack.judge_url}", "reward.timeout_s=5",
        "reward.max_attempts=2", "policy.sampling_steps=3", "optim.timesteps_per_sample=2", "ray.num_cpus=2",
    ]  # fmt: skip
    return load_config(CONFIG, overrides)


def epochs_of(run_dir: Path) -> list[dict[str, Any]]:
    return [r for r in MetricsLog(run_dir / "metrics.jsonl").read() if "stage_s" in r]


def final_adapters(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    path = latest_checkpoint(run_dir)
    assert path is not None and load_checkpoint(path)[0].epoch == EPOCHS
    learner = load_checkpoint(path)[1]
    return {name: learner[name] for name in (TRAINABLE, SAMPLING)}


@pytest.fixture(scope="module")
def runs(ray_session: None, stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One run on-policy and one pipelined, uninterrupted (the tests below read their files)."""
    out = tmp_path_factory.mktemp("runs")
    dirs = {"on_policy": out / "on_policy", "pipelined": out / "pipelined"}
    for name, run_dir in dirs.items():
        train(config_for(stack, run_dir, pipeline=name == "pipelined"), resume=False)
    return dirs


def test_without_pipelining_every_batch_is_sampled_with_the_learners_current_weights(runs: dict[str, Path]) -> None:
    records = epochs_of(runs["on_policy"])
    assert [r["sampled_versions"] for r in records] == [[0], [1], [2]]
    assert [r["learner_version"] for r in records] == [0, 1, 2]
    assert [r["old_version"] for r in records] == [0, 1, 2]
    assert [r["staleness"] for r in records] == [0] * EPOCHS
    assert not any(r["sampled_ahead"] for r in records)


def test_pipelined_batches_are_one_version_stale_and_compared_against_the_old_that_sampled_them(
    runs: dict[str, Path],
) -> None:
    records = epochs_of(runs["pipelined"])
    # Epoch 1 samples first, then sends epoch 2's rollout before its update (version 0 still), and
    # epoch 2 sends epoch 3's before its own: each is updated on by a learner one version further.
    assert [r["sampled_ahead"] for r in records] == [False, True, True]
    assert [r["sampled_versions"] for r in records] == [[0], [0], [1]]
    assert [r["learner_version"] for r in records] == [0, 1, 2]
    assert [r["staleness"] for r in records] == [0, 1, 1]
    assert [r["old_version"] for r in records] == [0, 0, 1]  # what the learner-side load reported
    assert all(r["dropped"] == 0 and r["optimizer_steps"] > 0 for r in records)
    on_policy = epochs_of(runs["on_policy"])
    # The first epoch is the same batch and the same update either way; the second is not the same batch.
    assert records[0]["reward"] == on_policy[0]["reward"] and records[0]["loss"] == on_policy[0]["loss"]
    assert records[1]["loss"] != on_policy[1]["loss"]
    # The last epoch sends nothing ahead: its checkpoint holds the learner's state alone.
    last = latest_checkpoint(runs["pipelined"])
    assert last is not None and AHEAD_SAMPLING not in load_checkpoint(last)[1]


def kill_rollout_during_an_update(stop: threading.Event) -> threading.Thread:
    """Kill the rollout actor's process the first time it samples while a learner updates (Ray names
    a worker's process `ray::<class>.<method>` while the method runs)."""

    def running() -> list[tuple[int, str]]:
        # Only this session's Ray (started by this process): another run on the machine has the same titles.
        found = []
        for proc in psutil.Process().children(recursive=True):
            try:
                cmdline = proc.cmdline()
            except psutil.Error:  # exited since listed
                continue
            if cmdline and cmdline[0].startswith("ray::"):
                found.append((proc.pid, cmdline[0].strip()))
        return found

    def watch() -> None:
        while not stop.is_set():
            titles = running()
            sampling = [pid for pid, title in titles if title == "ray::Rollout.rollout"]
            if sampling and any(title.endswith(".train_epoch") for _, title in titles):
                os.kill(sampling[0], signal.SIGKILL)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_rollout_actor_lost_while_its_pipelined_rollout_is_in_flight_stops_the_run_and_it_resumes_exactly(
    runs: dict[str, Path], stack: Stack, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    stop = threading.Event()
    watcher = kill_rollout_during_an_update(stop)
    try:
        with pytest.raises(RunStopped) as stopped:
            train(config_for(stack, run_dir, pipeline=True), resume=False)
    finally:
        stop.set()
        watcher.join()
    # Epoch n's update ran while epoch n + 1 was sampled (n = 1 unless that rollout was over before the
    # watcher saw it): the loss shows when epoch n + 1 is collected, and epoch n is checkpointed with
    # the weights epoch n + 1 was being sampled with.
    finished = len(epochs_of(run_dir))
    message = str(stopped.value)
    assert 1 <= finished < EPOCHS and "rollout" in message and f"stopped after epoch {finished}" in message, message
    assert f"resume from checkpoint-{finished:05d}.pt" in message, message
    saved = latest_checkpoint(run_dir)
    assert saved is not None
    state, learner, _ = load_checkpoint(saved)
    assert state.epoch == finished and learner[AHEAD_SAMPLING][0] == finished - 1 == learner["version"] - 1
    train(config_for(stack, run_dir, pipeline=True), resume=True)
    resumed, whole = epochs_of(run_dir), epochs_of(runs["pipelined"])
    assert [[r[k] for k in COMPARED] for r in resumed] == [[r[k] for k in COMPARED] for r in whole]
    a, b = final_adapters(runs["pipelined"]), final_adapters(run_dir)
    for adapter in a:
        for key in a[adapter]:
            assert torch.equal(a[adapter][key], b[adapter][key]), (adapter, key)


def test_the_bench_report_compares_the_two_runs_in_its_own_section(runs: dict[str, Path], tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    write_section(page, "bench-other", "## another bench\n\nkept")
    write_section(page, SECTION, "an older run")
    write_section(page, SECTION, report(runs["on_policy"], runs["pipelined"], "Machine: this one."))
    text = page.read_text()
    assert "kept" in text and "an older run" not in text and text.count(f"<!-- {SECTION}:start -->") == 1
    times = {mode: epoch_summary(path) for mode, path in runs.items()}
    assert times["pipelined"]["max_staleness"] == 1 and times["on_policy"]["max_staleness"] == 0
    for mode, row in (("on_policy", "| on-policy |"), ("pipelined", "| pipelined |")):
        line = next(line for line in text.splitlines() if line.startswith(row))
        assert f"{times[mode]['mean_s']:.2f}" in line
    assert "| mas |" in text and "| motion_reward |" in text and "2 held-out pairs" in text

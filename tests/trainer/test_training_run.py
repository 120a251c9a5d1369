"""End-to-end MotionNFT on this machine: real services on loopback, local Ray, the tiny policy.

Two short runs share one local Ray: (1) epochs with healthy services change the learner's weights
and write metrics, then the judge is killed mid-run and the following groups are dropped and
counted, never scored; (2) a run stopped after one epoch and resumed ends with the same weights as
an uninterrupted run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks.threaded_server import ThreadedServer
from motionnft.data.synth import generate, split, write_dataset
from services.mllm_judge.app import create_app as create_judge
from services.mllm_judge.settings import MllmJudgeSettings
from services.reward_api.app import create_app as create_reward
from services.reward_api.settings import RewardApiSettings
from tests.services.harness import in_thread
from trainer.checkpoints import latest_checkpoint, load_checkpoint
from trainer.config import load_config
from trainer.loop import train
from trainer.metrics import MetricsLog
from workers.policies.factory import TINY_CHECKPOINT, TINY_QWEN_CHECKPOINT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first"),
]
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo_cpu.yaml"
QWEN_CONFIG = CONFIG.with_name("demo_cpu_qwen.yaml")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    train_pairs, eval_pairs = split(generate(24, 5, 64), 0.25, 5)
    out = tmp_path_factory.mktemp("synth")
    return write_dataset(train_pairs, out, "train.jsonl"), write_dataset(eval_pairs[:4], out, "eval.jsonl")


@pytest.fixture(scope="module")
def reward_url() -> Iterator[str]:
    with in_thread(create_reward(RewardApiSettings(max_wait_ms=1.0, flow_threads=1))) as url:
        yield url


def config_for(
    run_dir: Path,
    data: tuple[Path, Path],
    reward: str,
    judge: str,
    epochs: int,
    *,
    preset: Path = CONFIG,
    **extra: object,
):
    # On-policy (the demo pipelines): which epoch sees a service die is then exact; test_pipeline
    # covers pipelined runs.
    overrides = [
        f"run.out_dir={run_dir}", f"run.epochs={epochs}", "run.eval_every=100", "run.checkpoint_every=1",
        f"data.train_path={data[0]}", f"data.eval_path={data[1]}", "data.prompts_per_epoch=2",
        "data.samples_per_prompt=4", f"reward.reward_url={reward}", f"reward.judge_url={judge}",
        "reward.timeout_s=5", "reward.max_attempts=2", "policy.sampling_steps=3", "optim.timesteps_per_sample=2",
        "ray.num_cpus=2", "run.pipeline=false", *[f"{k}={v}" for k, v in extra.items()],
    ]  # fmt: skip
    return load_config(preset, overrides)


def learner_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    path = latest_checkpoint(run_dir)
    assert path is not None
    return load_checkpoint(path)[1]["default"]


class StoppableJudge:
    """The judge under uvicorn in a thread, which a test can kill while training runs."""

    def __init__(self) -> None:
        self.server = ThreadedServer(create_judge(MllmJudgeSettings()))
        self.url = self.server.start()

    def kill_after_epoch(self, metrics: Path, epoch: int) -> None:
        def watch() -> None:
            while not any(r["epoch"] == epoch for r in MetricsLog(metrics).read()):
                time.sleep(0.01)
            self.server.stop()

        threading.Thread(target=watch, daemon=True).start()


def test_training_changes_weights_and_drops_groups_when_a_service_dies(
    ray_session: None, data: tuple[Path, Path], reward_url: str, tmp_path: Path
) -> None:
    judge = StoppableJudge()
    run_dir = tmp_path / "run"
    judge.kill_after_epoch(run_dir / "metrics.jsonl", epoch=2)
    config = config_for(run_dir, data, reward_url, judge.url, epochs=3, **{"reward.max_drop_fraction": 1.0})
    train(config, resume=False)
    records = MetricsLog(run_dir / "metrics.jsonl").read()
    first, second, third = (r for r in records if r["epoch"] in (1, 2, 3) and "stage_s" in r)
    assert first["dropped"] == 0 and second["dropped"] == 0
    assert 0.0 <= first["reward"] <= 1.0 and first["optimizer_steps"] > 0
    assert 0.0 <= first["mas"] <= 100.0 and "best_mas_gain" in first  # how the reward ranks against MAS
    assert third["dropped"] == 2 and third["dropped_total"] == 2  # the judge died: counted...
    assert "reward" not in third and "loss" not in third  # ...and nothing was scored or learned from them
    initial = torch.load(sorted(run_dir.glob("checkpoint-*.pt"))[0], weights_only=True)["learner"]["default"]
    final = learner_weights(run_dir)
    assert any(not torch.equal(initial[k], final[k]) for k in final)  # the learner's LoRA moved...
    assert any("lora_B" in k and bool(v.abs().sum() > 0) for k, v in final.items())  # ...away from its no-op init
    assert records[0]["epoch"] == 0 and "mas" in records[0]["eval"]


def test_resumed_run_equals_uninterrupted_run(
    ray_session: None, data: tuple[Path, Path], reward_url: str, tmp_path: Path
) -> None:
    with in_thread(create_judge(MllmJudgeSettings())) as judge_url:
        whole = tmp_path / "whole"
        train(config_for(whole, data, reward_url, judge_url, epochs=2), resume=False)
        parts = tmp_path / "parts"
        train(config_for(parts, data, reward_url, judge_url, epochs=1), resume=False)
        train(config_for(parts, data, reward_url, judge_url, epochs=2), resume=True)
    epochs = [r["epoch"] for r in MetricsLog(parts / "metrics.jsonl").read() if "stage_s" in r]
    assert epochs == [1, 2]  # the resumed run continues the same metrics file, no epoch twice
    a, b = learner_weights(whole), learner_weights(parts)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.skipif(not TINY_QWEN_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny --family qwen_image_edit`")
def test_the_qwen_family_trains_through_the_same_loop(
    ray_session: None, data: tuple[Path, Path], reward_url: str, tmp_path: Path
) -> None:
    """`policy.family: qwen_image_edit` picks the class; nothing else in the trainer changes."""
    one_eval = (data[0], write_dataset(split(generate(24, 5, 64), 0.25, 5)[1][:1], tmp_path, "eval.jsonl"))
    with in_thread(create_judge(MllmJudgeSettings())) as judge_url:
        run_dir = tmp_path / "qwen"
        config = config_for(run_dir, one_eval, reward_url, judge_url, epochs=1, preset=QWEN_CONFIG)
        assert (config.policy.family, config.policy.guidance) == ("qwen_image_edit", None)
        train(config, resume=False)
    records = MetricsLog(run_dir / "metrics.jsonl").read()
    (epoch,) = (r for r in records if "stage_s" in r)
    assert epoch["dropped"] == 0 and epoch["optimizer_steps"] > 0 and 0.0 <= epoch["reward"] <= 1.0
    assert records[0]["epoch"] == 0 and "mas" in records[0]["eval"] and "mas" in epoch["eval"]
    final = learner_weights(run_dir)
    assert final and all(k.startswith("transformer_blocks.") for k in final)  # Qwen's blocks carry the LoRA
    assert any("lora_B" in k and bool(v.abs().sum() > 0) for k, v in final.items())  # moved from its no-op init

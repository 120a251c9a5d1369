"""SPEC kinds for `motionnft bench generate`: run directories and checkpoints (their EMA), presets, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from motionnft.data.formats import load_dataset
from motionnft.data.records import EditRecord
from tests.workers.bench_data import DEMO, DEMO_QWEN, SIZE, pixels, write_bench
from trainer.bench_sources import resolve_source
from trainer.checkpoints import TrainerState, save_checkpoint
from trainer.config import load_config, to_yaml
from trainer.learner import Learner
from workers.bench_generate import generate_bench
from workers.bench_tasks import SpecError
from workers.policies.base import TRAINABLE
from workers.policies.factory import TINY_CHECKPOINT

pytestmark = pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first")


def make_run(run_dir: Path) -> tuple[Path, Path]:
    """A run directory as `trainer.loop.train` leaves it, from a real learner of the demo config: epoch 1
    holds the EMA of the untrained (no-op) adapter, epoch 2 the EMA after its LoRA B factors moved."""
    config = load_config(DEMO, [f"run.out_dir={run_dir}", "data.size=64", "policy.sampling_steps=2",
                                "optim.timesteps_per_sample=2"])  # fmt: skip
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(config))
    learner = Learner(config.policy, config.optim, config.nft, size=SIZE, seed=0)
    untrained = save_checkpoint(run_dir, TrainerState(epoch=1), learner.state_dict(), to_yaml(config))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, param in learner.policy.adapter_parameters(TRAINABLE).items():
            if "lora_B" in key:
                param.copy_(torch.randn(param.shape, generator=generator))
    learner.ema.update(learner.policy.adapter_parameters(TRAINABLE))  # the EMA moves 10% of the way
    trained = save_checkpoint(run_dir, TrainerState(epoch=2), learner.state_dict(), to_yaml(config))
    return untrained, trained


def render(spec: str, records: list[EditRecord], folder: Path, steps: int | None = None) -> dict[str, np.ndarray]:
    """Every item rendered in this process by SPEC; item id -> uint8 (S, S, 3)."""
    generate_bench(records, resolve_source(spec, size=SIZE, steps=steps), folder, use_ray=False, progress=False)
    return {p.stem: pixels(p) for p in folder.glob("*.png")}


def test_a_run_renders_with_the_ema_of_its_latest_checkpoint(tmp_path: Path) -> None:
    untrained, trained = make_run(tmp_path / "run")
    run = resolve_source(str(tmp_path / "run"), size=SIZE)
    assert (run.kind, run.family, run.steps, run.guidance, run.path) == ("run", "flux_kontext", 2, 2.5, str(trained))
    ema = torch.load(trained, weights_only=True)["learner"]["ema"]["shadow"]
    assert run.adapter is not None and run.adapter.keys() == ema.keys()
    assert all(torch.equal(run.adapter[k], ema[k]) for k in ema)
    assert resolve_source(str(untrained), size=SIZE).kind == "checkpoint"

    records = load_dataset(write_bench(tmp_path / "bench", 2))
    base = render(str(DEMO), records, tmp_path / "out" / "base", steps=2)  # the run's steps, no adapter
    no_op = render(str(untrained), records, tmp_path / "out" / "untrained")
    moved = render(str(tmp_path / "run"), records, tmp_path / "out" / "trained")
    assert len(base) == 2 and base.keys() == no_op.keys() == moved.keys()
    for item in base:  # an EMA that is still the no-op init renders the base's pixels; a moved one does not
        np.testing.assert_array_equal(no_op[item], base[item])
        assert not np.array_equal(moved[item], base[item])


def test_a_preset_is_its_policys_base_with_its_sampler_settings() -> None:
    flux = resolve_source(str(DEMO), size=SIZE)
    assert (flux.kind, flux.family, flux.steps, flux.guidance, flux.adapter) == ("preset", "flux_kontext", 6, 2.5, None)
    assert resolve_source(str(DEMO), size=SIZE, steps=3, guidance=1.0).settings()["steps"] == 3
    qwen = resolve_source(str(DEMO_QWEN), size=SIZE)
    assert (qwen.family, qwen.guidance, qwen.policy and qwen.policy.variant) == ("qwen_image_edit", None, "edit")
    with pytest.raises(SpecError, match="qwen_image_edit takes no guidance"):
        resolve_source(str(DEMO_QWEN), size=SIZE, guidance=2.0)
    with pytest.raises(SpecError, match="sampling_steps"):
        resolve_source(str(DEMO), size=SIZE, steps=1)  # Heun needs two times


def test_what_is_none_of_the_kinds_says_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"does not exist \(a SPEC is a run directory .*; a config preset .*; a diff"):
        resolve_source(str(tmp_path / "missing"), size=SIZE)
    with pytest.raises(SpecError, match=r"is none of: a run directory"):
        resolve_source(str(tmp_path), size=SIZE)
    (tmp_path / "config.yaml").write_text("run: {}\n")
    with pytest.raises(SpecError, match="a run directory with no checkpoint"):
        resolve_source(str(tmp_path), size=SIZE)
    (tmp_path / "bad.yaml").write_text("policy: {family: sdxl}\n")
    with pytest.raises(SpecError, match="no policy family 'sdxl'"):
        resolve_source(str(tmp_path / "bad.yaml"), size=SIZE)
    (tmp_path / "checkpoint-00001.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SpecError, match="cannot read the checkpoint"):
        resolve_source(str(tmp_path / "checkpoint-00001.pt"), size=SIZE)

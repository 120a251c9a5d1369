"""trainer/demo.py's command line: its progress weights and its refusal of a bad setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.demo import STAGES, main, stage_seconds


def test_the_demo_bar_weights_each_stage_by_its_expected_seconds() -> None:
    weights = stage_seconds(60, 30)
    assert len(weights) == len(STAGES)
    # Ray's start, 60 epochs at 9.5 s and 3 evaluations (before, epoch 30, epoch 60) at 22 s.
    assert weights[STAGES.index("train")] == 10.0 + 570.0 + 66.0
    assert stage_seconds(2, 30)[STAGES.index("train")] == 10.0 + 19.0 + 44.0  # before and after
    assert stage_seconds(60, 30, bench=False) == weights[:-1]


def test_a_bad_setting_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main(["--set", "run.epochz=2", "--run-dir", str(run_dir)])
    assert stopped.value.code == 2
    assert "unknown config key 'run.epochz'" in capsys.readouterr().err
    assert not run_dir.exists()

"""`motionnft data synth` and `motionnft data validate` through typer's CliRunner on data_app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from motionnft.data.cli import data_app
from motionnft.data.formats import load_jsonl
from motionnft.data.synth import CATEGORIES

runner = CliRunner()


def test_synth_writes_train_and_eval_and_they_validate(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = runner.invoke(data_app, ["synth", "--out", str(out), "--n", "30", "--seed", "2", "--eval-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    assert "wrote 30 pairs (64x64)" in result.output
    for category in CATEGORIES:
        assert f"{category:<16}{4:>7}{1:>7}" in result.output  # 5 per category: 4 train, 1 eval
    train, evaluation = load_jsonl(out / "train.jsonl"), load_jsonl(out / "eval.jsonl")
    assert (len(train), len(evaluation)) == (24, 6)
    assert not {r.id for r in train} & {r.id for r in evaluation}
    assert len(list((out / "images").glob("*.png"))) == 60 and len(list((out / "flows").glob("*.npy"))) == 30
    first = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"id", "prompt", "category", "image", "flow"}

    result = runner.invoke(data_app, ["validate", str(out / "train.jsonl")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: 24 record(s)")


def test_validate_lists_problems_and_exits_non_zero(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    assert runner.invoke(data_app, ["synth", "--out", str(out), "--n", "6", "--eval-fraction", "0"]).exit_code == 0
    lines = (out / "train.jsonl").read_text().splitlines()
    broken = json.loads(lines[2])
    broken["prompt"] = " "
    (out / "images" / f"{json.loads(lines[4])['id']}_target.png").unlink()
    (out / "train.jsonl").write_text("\n".join([*lines[:2], json.dumps(broken), *lines[3:]]) + "\n")
    result = runner.invoke(data_app, ["validate", str(out / "train.jsonl")])
    assert result.exit_code == 1
    assert "row 2 (synth-s0-00002): blank prompt" in result.output
    assert "row 4 (synth-s0-00004): target image file not found" in result.output
    assert "2 problem(s) in 2 of 6 record(s)" in result.output


def test_validate_reports_an_unreadable_manifest(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "image": ["a", "b"]}\n{oops\n')
    result = runner.invoke(data_app, ["validate", str(tmp_path / "bad.jsonl")])
    assert result.exit_code == 2 and "bad.jsonl:2: malformed JSON" in result.output
    result = runner.invoke(data_app, ["validate", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "not found" in result.output

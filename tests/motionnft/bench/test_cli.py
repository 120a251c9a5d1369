"""`motionnft bench score` through typer's CliRunner: a whole run, and bad input as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from motionnft.bench.known import write_known_models
from motionnft.cli import app
from motionnft.data.synth import generate
from motionnft.data.synth_io import write_dataset
from motionnft.stack import free_port

runner = CliRunner()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("cli-bench")
    pairs = generate(6, 1, 64)
    manifest = write_dataset(pairs, root / "bench", "bench.jsonl", progress=False)
    return manifest, write_known_models(pairs, root / "models", 1, 64, ("target", "none"))


def test_score_with_judge_win_rate_writes_results_report_and_page(bench: tuple[Path, dict[str, Path]],
                                                                    tmp_path: Path) -> None:  # fmt: skip
    manifest, models = bench
    out = tmp_path / "out"
    args = ["bench", "score", "--bench", str(manifest), "--model", f"target={models['target']}",
            "--model", f"none={models['none']}", "--out", str(out), "--win-rate", "judge", "--no-flows"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["versions"]["win_rate"] == "judge" and "compare" in data["versions"]["rubrics"]
    assert data["models"]["target"]["win_rate"] == 100.0 and data["models"]["none"]["win_rate"] == 0.0
    assert "| target |" in result.output and (out / "index.html").is_file()
    assert len((out / "cache" / "compare.jsonl").read_text().splitlines()) == 6  # one pair per item


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("target", [], "expected NAME=DIR"),
        ("a|b={target}", [], "holds '|'"),
        ("x=/does/not/exist", [], "is not a folder"),
        ("t={target}", ["--win-rate", "coin"], "expected scores or judge"),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(bench: tuple[Path, dict[str, Path]], tmp_path: Path, model: str,
                                                 extra: list[str], message: str) -> None:  # fmt: skip
    manifest, models = bench
    args = ["bench", "score", "--bench", str(manifest), "--model", model.format(target=models["target"]),
            "--out", str(tmp_path / "out"), *extra]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_services_that_do_not_answer_are_a_clear_error(bench: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    manifest, models = bench
    closed = f"http://127.0.0.1:{free_port()}"
    args = ["bench", "score", "--bench", str(manifest), "--model", f"t={models['target']}", "--out",
            str(tmp_path / "out"), "--reward-url", closed, "--judge-url", closed, "--timeout-s", "2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "the services did not answer" in result.output, result.output


def test_an_unreadable_bench_is_a_clear_error(tmp_path: Path, bench: tuple[Path, dict[str, Path]]) -> None:
    broken = tmp_path / "bench.jsonl"
    broken.write_text('{"prompt": "x", "image": ["missing.png", "missing.png"]}\n')
    target = bench[1]["target"]
    args = ["bench", "score", "--bench", str(broken), "--model", f"t={target}", "--out", str(tmp_path / "o")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "missing.png" in result.output, result.output

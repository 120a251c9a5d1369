"""The whole `motionnft` command (`cli.main`): every room's commands are mounted, each reaches its room
only when run, and the commands of the rooms above the library fail in one plain line too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attributes: Any) -> None:
    """Put a stand-in for module `name` in sys.modules (so the command's lazy import finds it)."""
    module = ModuleType(name)
    module.__dict__.update(attributes)
    monkeypatch.setitem(sys.modules, name, module)


def test_every_command_is_mounted() -> None:
    group: Any = typer.main.get_command(app)
    assert set(group.commands) == {"score", "data", "bench", "serve", "train", "pretrain-tiny", "plot"}
    assert set(group.commands["data"].commands) == {"synth", "validate", "mine", "video-corpus"}
    assert set(group.commands["bench"].commands) == {"generate", "score"}
    assert set(group.commands["serve"].commands) == {"reward"}


def test_the_command_loads_no_room_until_one_of_its_commands_runs() -> None:
    """`motionnft score` starts without the trainer, the workers, the services, Ray or FastAPI."""
    rooms = ["trainer", "workers", "services", "benchmarks", "ray", "fastapi", "diffusers"]
    script = f"import sys, cli.main\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & {set(rooms)!r}))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL, timeout=120
    )
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


def test_pretrain_tiny_runs_the_trainers_pretraining_with_the_documented_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The defaults are those `checkpoints/tiny-kontext` was made with (its pretrain.json)."""
    calls: list[tuple[Any, ...]] = []

    def pretrain(pairs: Any, out: Path, **settings: Any) -> Path:
        calls.append((pairs, out, settings))
        out.mkdir(parents=True)
        (out / "pretrain.json").write_text('{"pairs": 3}\n')
        return out

    def generate(n: int, seed: int, size: int) -> list[str]:
        return [f"pair {i} of seed {seed} at {size}" for i in range(n)]

    fake_module(monkeypatch, "trainer.pretrain", pretrain_tiny=pretrain)
    monkeypatch.setattr("motionnft.data.synth.generate", generate)
    result = runner.invoke(app, ["pretrain-tiny", "--out", str(tmp_path / "tiny")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"pairs": 3}
    ((pairs, out, settings),) = calls
    assert (len(pairs), pairs[0], out) == (1200, "pair 0 of seed 1000 at 64", tmp_path / "tiny")
    recorded = json.loads((REPO / "checkpoints" / "tiny-kontext" / "pretrain.json").read_text())
    assert settings == {
        "steps": recorded["flow"]["steps"],
        "vae_steps": recorded["vae"]["steps"],
        "batch_size": recorded["batch_size"],
        "lr": recorded["flow"]["lr"],
        "seed": recorded["seed"],
        "size": recorded["size"],
        # A record from before the schedule was a setting was made at a constant rate.
        "schedule": recorded["flow"].get("schedule", "constant"),
    }
    assert recorded["pairs"] == 1200


def test_pretrain_tiny_for_qwen_uses_the_settings_of_its_committed_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`--family qwen_image_edit` runs Qwen's pretraining into checkpoints/tiny-qwen-image-edit by default,
    with the settings its pretrain.json records; an unknown family is one plain line."""
    calls: list[tuple[Any, ...]] = []

    def pretrain(pairs: Any, out: Path, **settings: Any) -> Path:
        calls.append((pairs, out, settings))
        (tmp_path / "pretrain.json").write_text('{"pairs": 3}\n')
        return tmp_path

    fake_module(monkeypatch, "trainer.pretrain_qwen", pretrain_tiny_qwen=pretrain)
    monkeypatch.setattr("motionnft.data.synth.generate", lambda n, seed, size: [f"pair {i}" for i in range(n)])
    result = runner.invoke(app, ["pretrain-tiny", "--family", "qwen_image_edit"])
    assert result.exit_code == 0, result.output
    ((pairs, out, settings),) = calls
    recorded = json.loads((REPO / "checkpoints" / "tiny-qwen-image-edit" / "pretrain.json").read_text())
    assert (len(pairs), out, recorded["family"]) == (recorded["pairs"], Path("checkpoints/tiny-qwen-image-edit"),
                                                     "qwen_image_edit")  # fmt: skip
    assert settings == {
        "steps": recorded["flow"]["steps"],
        "vae_steps": recorded["vae"]["steps"],
        "batch_size": recorded["batch_size"],
        "lr": recorded["flow"]["lr"],
        "seed": recorded["seed"],
        "size": recorded["size"],
        # A record from before the schedule was a setting was made at a constant rate.
        "schedule": recorded["flow"].get("schedule", "constant"),
    }
    refused = runner.invoke(app, ["pretrain-tiny", "--family", "sdxl"])
    assert refused.exit_code != 0 and "no tiny policy for 'sdxl'" in refused.output


def test_train_passes_its_options_to_the_trainer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    argv: list[list[str]] = []
    fake_module(monkeypatch, "trainer.__main__", main=argv.append)
    config = tmp_path / "run.yaml"
    config.write_text("{}\n")
    args = ["train", "--config", str(config), "--set", "run.epochs=2", "--set", "a.b=c", "--no-resume"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert argv == [["--config", str(config), "--set", "run.epochs=2", "--set", "a.b=c", "--no-resume"]]


def test_serve_reward_sets_the_services_address(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str | None, str | None]] = []
    for name in ("REWARD_API_HOST", "REWARD_API_PORT"):
        monkeypatch.delenv(name, raising=False)  # and restored afterwards
    main = lambda: seen.append((os.environ.get("REWARD_API_HOST"), os.environ.get("REWARD_API_PORT")))  # noqa: E731
    fake_module(monkeypatch, "services.reward_api.__main__", main=main)
    result = runner.invoke(app, ["serve", "reward", "--host", "0.0.0.0", "--port", "9001"])
    assert result.exit_code == 0, result.output
    assert seen == [("0.0.0.0", "9001")]


def test_plot_prints_the_picture_it_drew(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_module(monkeypatch, "trainer.plots", plot_run=lambda run_dir: run_dir / "curves.png")
    result = runner.invoke(app, ["plot", str(tmp_path)])
    assert (result.exit_code, result.output) == (0, f"{tmp_path / 'curves.png'}\n")


@pytest.mark.parametrize("args", [["train", "--config"], ["plot"]])
def test_the_rooms_commands_fail_in_one_plain_line(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / ("a-rather-long-folder-name-" * 4) / "missing.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "cli", *args, str(missing)],
        capture_output=True,
        text=True,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "40"},
        timeout=120,
    )
    option = "'--config'" if args[0] == "train" else "'run_dir'"
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: Invalid value for {option}: ") and str(missing) in result.stderr

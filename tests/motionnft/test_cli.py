"""The library's commands (`score`, `data`): scoring from files, the flow picture, and clear errors.

The one-line errors are checked from every way to run them: `python -m motionnft.cli` (the library's
commands alone), the `motionnft` script and `python -m cli` (the whole command, from the entry package).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from motionnft.cli import app
from tests.motionnft.flow.known_motion import gaussian_bump

runner = CliRunner()


def write_images(tmp_path: Path) -> dict[str, Path]:
    motion = gaussian_bump(amplitude=(6.0, -4.0), size=96, margin=8)
    paths = {name: tmp_path / f"{name}.png" for name in ("source", "target", "static")}
    Image.fromarray(motion.source).save(paths["source"])
    Image.fromarray(motion.target).save(paths["target"])
    Image.fromarray(motion.source).save(paths["static"])
    return paths


def test_score_prints_json_and_draws_flows(tmp_path: Path) -> None:
    paths = write_images(tmp_path)
    picture = tmp_path / "flows.png"
    args = ["score", "--source", str(paths["source"]), "--target", str(paths["target"]),
            "--edit", str(paths["target"]), "--edit", str(paths["static"]), "--flow-image", str(picture)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["flow_backend"] == "opencv-dis-medium"
    exact, static = report["edits"]
    assert exact["reward_continuous"] > static["reward_continuous"]
    assert exact["mas"] > static["mas"] and 0 <= static["mas"] <= exact["mas"] <= 100
    assert set(exact["terms"]) == {"vector", "direction", "movement", "distance"}
    with Image.open(picture) as image:  # 2 rows (edits) x 3 columns (edit, target, difference)
        assert image.width > 3 * 96 and image.height > 2 * 96


def test_unreadable_image_is_a_clear_error(tmp_path: Path) -> None:
    paths = write_images(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    args = ["score", "--source", str(paths["source"]), "--target", str(paths["target"]), "--edit", str(broken)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    # One plain line naming the option, the whole path and the reason (was a Rich panel cut at 80 columns).
    assert result.output.splitlines() == [
        f"error: Invalid value for '--edit': {broken}: not a decodable image (UnidentifiedImageError)"
    ]


REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("motionnft")
ENTRY_POINTS = {
    "module": [sys.executable, "-m", "motionnft.cli"],
    "script": [str(SCRIPT)],
    "entry": [sys.executable, "-m", "cli"],
}


def run_cli(entry: str, args: list[str], columns: int) -> subprocess.CompletedProcess[str]:
    """The real command in a child process: no TTY, stdin from /dev/null, the terminal width told by COLUMNS."""
    if not Path(ENTRY_POINTS[entry][0]).exists():
        pytest.skip(f"no {ENTRY_POINTS[entry][0]} (package not installed in this environment)")
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run(
        [*ENTRY_POINTS[entry], *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


@pytest.fixture
def long_dir(tmp_path: Path) -> Path:
    """A folder whose path alone is wider than any terminal tested here."""
    folder = tmp_path / ("a-rather-long-folder-name-" * 6) / "and-deeper-still"
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize("columns", [80, 40])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_undecodable_image_is_one_plain_line_at_any_width(long_dir: Path, entry: str, columns: int) -> None:
    paths = write_images(long_dir)
    broken = long_dir / "broken.png"
    broken.write_bytes(b"not an image")
    args = ["score", "--source", str(broken), "--target", str(paths["target"]), "--edit", str(paths["static"])]
    result = run_cli(entry, args, columns)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: Invalid value for '--source': {broken}: not a decodable image (UnidentifiedImageError)"
    ]


@pytest.mark.parametrize("columns", [80, 40])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_missing_source_file_is_one_plain_line_at_any_width(long_dir: Path, entry: str, columns: int) -> None:
    paths = write_images(long_dir)
    missing = long_dir / "missing.png"
    args = ["score", "--source", str(missing), "--target", str(paths["target"]), "--edit", str(paths["static"])]
    result = run_cli(entry, args, columns)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"error: Invalid value for '--source': file '{missing}' does not exist."]


@pytest.mark.parametrize("entry", ["module", "entry"])
def test_usage_errors_are_one_line_with_exit_status_2(entry: str) -> None:
    result = run_cli(entry, ["score"], columns=40)
    assert (result.returncode, result.stderr.splitlines()) == (2, ["error: Missing option '--source'."])
    result = run_cli(entry, ["no-such-command"], columns=40)
    assert (result.returncode, result.stderr.splitlines()) == (2, ["error: No such command 'no-such-command'."])


def test_the_library_module_runs_only_the_librarys_commands() -> None:
    """`train` needs the trainer, a room above the library: only the whole command (`cli`) has it."""
    result = run_cli("module", ["train", "--help"], columns=80)
    assert (result.returncode, result.stderr.splitlines()) == (2, ["error: No such command 'train'."])


@pytest.mark.parametrize("module", ["motionnft.cli", "cli.main"])
def test_a_bug_gets_pythons_own_traceback_not_a_rich_panel(module: str) -> None:
    script = (
        f"from {module} import app\n"
        "@app.command()\n"
        "def boom() -> None:\n"
        "    raise RuntimeError('boom')\n"
        "app(['boom'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "COLUMNS": "40"}, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback (most recent call last):" in result.stderr
    assert result.stderr.rstrip().endswith("RuntimeError: boom")
    assert not set("╭╮╰╯│") & set(result.stderr)

"""docs/images.md's table as `make images` writes it: this checkout's results, and rows measured elsewhere kept."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.docker.dockerfiles import DOCKER, catalogue

_spec = importlib.util.spec_from_file_location("motionnft_docker_build_images", DOCKER / "build_images.py")
assert _spec is not None and _spec.loader is not None
build_images = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_images)

TRAINER_ROW = "| `motionnft/trainer:0.1.0-cuda` | train | yes | 7.33 GB | 415 s | a Ray head runs a task |"


def test_a_new_build_is_written_and_a_row_measured_elsewhere_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_images, "WORK", tmp_path)
    docs = tmp_path / "images.md"
    docs.write_text(f"# Images\n\n{build_images.START}\n{TRAINER_ROW}\n{build_images.END}\n\nNotes stay.\n")
    row = {"key": "mllm-judge", "seconds": 100.0, "mb": 756.0, "checks": "no torch"}
    build_images.write_table([row], docs, catalogue())
    text = docs.read_text()
    assert TRAINER_ROW in text and "| `motionnft/mllm-judge:0.1.0` | judge | yes | 0.76 GB | 100 s | no torch |" in text
    assert "| `motionnft/reward-api:0.1.0-cuda` | raft | no | - | - | linted only |" in text
    assert text.endswith("Notes stay.\n")
    # Skipped as unchanged on the next run: the build time it was built in stays.
    build_images.write_table([{**row, "seconds": None}], docs, catalogue())
    assert "0.76 GB | 100 s" in docs.read_text()
    assert json.loads((tmp_path / "results.json").read_text())["mllm-judge"]["seconds"] == 100.0


def test_a_build_that_cannot_fit_on_the_disk_is_refused_before_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk fails a build minutes later, mid-commit; the check says so first, with the numbers."""
    monkeypatch.setattr(build_images, "free_gb", lambda path: 12.4)
    with pytest.raises(SystemExit) as refused:
        build_images.check_disk("reward-api", "motionnft/reward-api:0.1.0")
    message = str(refused.value)
    assert "needs about 20 GB free" in message and "12.4 GB are" in message and "make clean" in message
    build_images.check_disk("mllm-judge", "motionnft/mllm-judge:0.1.0")  # 3 GB fit in 12.4


def test_every_image_built_here_has_a_disk_estimate() -> None:
    built = {k for k, s in catalogue().items() if s["build_here"]} | {"trainer"}
    assert built <= set(build_images.BUILD_DISK_GB)

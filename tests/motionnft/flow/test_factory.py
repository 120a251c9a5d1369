"""build_flow_estimator and the package's import weight."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from motionnft.flow import FLOW_BACKENDS, DISFlow, RAFTFlow, build_flow_estimator


def test_backends_are_listed() -> None:
    assert set(FLOW_BACKENDS) == {"dis", "opencv", "raft_large", "raft_small"}


@pytest.mark.parametrize("backend", ["dis", "opencv"])
def test_dis_backend_and_its_alias(backend: str) -> None:
    estimator = build_flow_estimator(backend, preset="fast")
    assert isinstance(estimator, DISFlow)
    assert estimator.name == "opencv-dis-fast"
    assert estimator.device == torch.device("cpu")


def test_raft_backend_passes_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    estimator = build_flow_estimator("raft_small", allow_random_weights=True, num_flow_updates=3)
    assert isinstance(estimator, RAFTFlow)
    assert estimator.name == "torchvision-raft_small"
    assert estimator.num_flow_updates == 3


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown flow backend 'farneback'.*dis, opencv, raft_large, raft_small"):
        build_flow_estimator("farneback")


def test_importing_the_package_does_not_import_torchvision() -> None:
    # A fresh interpreter: this one has imported torchvision for other tests already.
    code = (
        "import sys, motionnft.flow; "
        "leaked = sorted(m for m in sys.modules if m.startswith('torchvision')); "
        "print(leaked); sys.exit(1 if leaked else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

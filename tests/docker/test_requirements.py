"""docker/requirements.py derives each image's requirement set from pyproject, pins and all."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from tests.docker.dockerfiles import DOCKER, catalogue, pyproject

# docker/ is no package (the images run the script by path): load it from its file.
_spec = importlib.util.spec_from_file_location("motionnft_docker_requirements", DOCKER / "requirements.py")
assert _spec is not None and _spec.loader is not None
requirements = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(requirements)


def names(lines: list[str]) -> set[str]:
    return {requirements.canonical(re.split(r"[\[=<>!~; ]", line, maxsplit=1)[0]) for line in lines}


def pins() -> dict[str, str]:
    """Every requirement line pyproject states, by project name (the source of truth)."""
    project = pyproject()["project"]
    lines = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {next(iter(names([r]))): r for r in lines if not r.startswith("motionnft")}


def resolve(*extras: str) -> list[str]:
    return requirements.requirement_set(pyproject(), list(extras))


def test_judge_holds_no_torch() -> None:
    got = names(resolve("judge"))
    assert not got & {"torch", "torchvision", "transformers", "triton"}
    assert {"fastapi", "uvicorn", "scikit-image", "opencv-python-headless", "numpy", "pydantic"} <= got


def test_reward_has_torch_but_no_torchvision() -> None:
    got = names(resolve("reward"))
    assert "torch" in got and "torchvision" not in got and "opencv-python-headless" in got
    assert "torchvision" in names(resolve("raft"))


def test_local_judge_and_train_sets() -> None:
    assert {"torch", "transformers", "jinja2", "scikit-image"} <= names(resolve("judge-local"))
    train = resolve("train")
    assert {"ray", "diffusers", "peft", "torchvision", "transformers"} <= names(train)
    assert len(train) == len(names(train)), "each project once"


@pytest.mark.parametrize("key", sorted(catalogue()))
def test_every_line_is_pyprojects_own_pin(key: str) -> None:
    known = pins()
    lines = resolve(*catalogue()[key]["extras"])
    core = names(pyproject()["project"]["dependencies"])
    assert core <= names(lines), "the core dependencies are in every image"
    for line in lines:
        assert "==" in line, f"unpinned: {line}"
        assert known[next(iter(names([line])))] == line


def test_cli_prints_the_set_and_refuses_unknown_extras() -> None:
    script = str(DOCKER / "requirements.py")
    out = subprocess.run([sys.executable, script, "judge"], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.splitlines() == resolve("judge")
    bad = subprocess.run([sys.executable, script, "jugde"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "no extra 'jugde'" in bad.stderr


def test_conflicting_pins_are_an_error() -> None:
    project = {"project": {"name": "p", "dependencies": ["a==1"], "optional-dependencies": {"x": ["a==2"]}}}
    with pytest.raises(ValueError, match="pinned twice"):
        requirements.requirement_set(project, ["x"])


def test_the_trainer_set_has_rays_dashboard_metrics_agent_and_data() -> None:
    """A RayJob submits through the dashboard's job API; the alerts read the metrics agent; the miner's
    cluster path is a Ray Data pipeline."""
    assert "ray[default,data]==2.60.0" in resolve("train")

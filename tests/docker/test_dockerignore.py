"""The build context: .dockerignore keeps out the venv, git, runs, tests, caches and checkpoints."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import PurePosixPath

import pytest

from tests.docker.dockerfiles import DOCKER, ROOT, parse


def patterns() -> list[tuple[bool, str]]:
    """(exclude?, pattern) in file order; Docker's rule: the last pattern that matches decides."""
    out = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            out.append((not negated, line.lstrip("!").strip("/")))
    return out


def matches(pattern: str, path: str) -> bool:
    """Docker's match, closely enough: the path or one of its parent directories matches."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    options = [pattern, pattern.removeprefix("**/")] if pattern.startswith("**/") else [pattern]
    return any(
        fnmatchcase(p, o) or fnmatchcase(p, f"*/{o}") * pattern.startswith("**/") for p in prefixes for o in options
    )


def excluded(path: str) -> bool:
    verdict = False
    for exclude, pattern in patterns():
        if matches(pattern, path):
            verdict = exclude
    return verdict


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", ".git/HEAD", "runs/demo/checkpoint.pt", "tests/conftest.py", "build/images/base-rootfs.tar",
     "services/__pycache__/app.cpython-311.pyc", "motionnft.egg-info/PKG-INFO", ".mypy_cache/x", "docs/method.md",
     "checkpoints/flux-kontext/transformer/model.safetensors",
     "checkpoints/tiny-kontext/model_index.json", "some-new-dataset/data.parquet"],
)  # fmt: skip
def test_kept_out(path: str) -> None:
    assert excluded(path), path


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "README.md", "docker/requirements.py", "docker/healthcheck.py", "services/reward_api/app.py",
     "motionnft/scoring.py", "trainer/__main__.py", "workers/rollout.py", "cli/main.py", "configs/demo_cpu.yaml"],
)  # fmt: skip
def test_let_in(path: str) -> None:
    assert not excluded(path), path


def test_everything_the_dockerfiles_copy_from_the_context_is_let_in() -> None:
    for dockerfile in DOCKER.glob("*.Dockerfile"):
        for ins in parse(dockerfile)[0]:
            if ins.keyword != "COPY" or ins.args.startswith("--from"):
                continue
            for source in ins.args.split()[:-1]:
                if source != ".":
                    assert (ROOT / source).exists() and not excluded(source), f"{dockerfile.name}: {source}"

"""A small Dockerfile reader for the tests: instructions with continuations joined, comments kept apart."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


@dataclass(frozen=True)
class Instruction:
    line: int  # 1-based line of the instruction's first line
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest, continuations joined with spaces


def parse(path: Path) -> tuple[list[Instruction], list[tuple[int, str]]]:
    """(instructions, comments) of a Dockerfile; comment lines inside a continuation are dropped (as Docker does)."""
    instructions: list[Instruction] = []
    comments: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            comments.append((number, stripped))
            continue
        if not stripped and not pending:
            continue
        if not pending:
            start = number
        pending.append(stripped.removesuffix("\\").strip())
        if not stripped.endswith("\\"):
            keyword, _, args = " ".join(p for p in pending if p).partition(" ")
            instructions.append(Instruction(start, keyword.upper(), args.strip()))
            pending = []
    return instructions, comments


def catalogue() -> dict[str, dict]:
    return tomllib.loads((DOCKER / "images.toml").read_text())["images"]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def env_of(instructions: list[Instruction], stage: int = -1) -> dict[str, str]:
    """ENV key=value pairs of one stage (default: the last, the runtime image)."""
    stages: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append(ins)
    env: dict[str, str] = {}
    for ins in stages[stage]:
        if ins.keyword == "ENV":
            for pair in ins.args.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env

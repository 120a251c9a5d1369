"""Checkpoints that resume the same run: learner state (both adapters, EMA, optimizer, step; no RNG:
the training noise is hashed from the run seed, epoch, group and micro-step), the trainer's own
state (epoch, data cursor, banned prompts, RNG) and the resolved config.

One file per checkpoint, written to a temporary name and renamed, so a crash mid-write never leaves
a half checkpoint as the latest. Loaded with `weights_only=True`: plain tensors, numbers and strings.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_GLOB = "checkpoint-*.pt"


@dataclass
class TrainerState:
    """What the controller itself must remember to continue a run exactly."""

    epoch: int = 0  # the next epoch to run
    cursor: int = 0  # position in the shuffled prompt order
    banned: list[str] = field(default_factory=list)
    dropped_total: int = 0


def save_checkpoint(run_dir: Path, trainer: TrainerState, learner: dict[str, Any], config_yaml: str) -> Path:
    """Write `checkpoint-<epoch>.pt` atomically; returns its path."""
    path = run_dir / f"checkpoint-{trainer.epoch:05d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"trainer": asdict(trainer), "learner": learner, "config": config_yaml}, tmp)
    os.replace(tmp, path)
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    paths = sorted(run_dir.glob(CHECKPOINT_GLOB))
    return paths[-1] if paths else None


def load_checkpoint(path: Path) -> tuple[TrainerState, dict[str, Any], str]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    return TrainerState(**data["trainer"]), data["learner"], data["config"]

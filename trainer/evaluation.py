"""Evaluation on the held-out split: one edit per pair with fixed seeds, scored three ways.

- `motion_reward`: the six-level reward from the reward API (what training optimises);
- `mas`: MotionEdit-Bench's Motion Alignment Score (0-100, docs/method.md section 6), from the reward
  service, computed from the very flows its reward uses (so a cluster on RAFT evaluates with RAFT);
- `judge`: the judge service's `edit` score in [0, 1].
Per-item values are kept so before/after can be compared pair by pair (paired bootstrap).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from trainer.actors import RunActors, WeightsRef
    from workers.tasks import EditTask

EVAL_EPOCH = -1  # a fixed epoch number: every evaluation samples with the same seeds


def evaluate(
    actors: RunActors,
    tasks: list[EditTask],
    weights: WeightsRef,
    save_to: Path | None = None,
) -> dict[str, Any]:
    """Sample one edit per held-out pair with `weights` as the sampling adapter; score and aggregate.

    With `save_to`, the inputs, targets and edits are kept there (npz of uint8 arrays) for pictures.
    """
    # One edit per pair, as the bench scores it: a group of 8 would cost 8x and only its first counts.
    groups = actors.sample_with(weights, tasks, EVAL_EPOCH, samples=1)
    if save_to is not None and groups:
        np.savez_compressed(
            save_to,
            ids=np.array([g.task.prompt_id for g in groups]),
            inputs=np.stack([g.task.input_image for g in groups]),
            targets=np.stack([g.task.target_image for g in groups]),
            edits=np.stack([g.images[0] for g in groups if g.images is not None]),
        )
    items = [
        {
            "id": g.task.prompt_id,
            "category": g.task.category or "all",
            "motion_reward": float(g.rewards.motion[0]),
            "judge": float(g.rewards.judge[0]),
            "mas": float(g.rewards.mas[0]),
        }
        for g in groups
    ]
    return {**aggregate(items), "items": items, "dropped": len(tasks) - len(groups)}


def aggregate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Means of motion_reward, mas and judge, overall and per category."""
    keys = ("motion_reward", "mas", "judge")
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_category[item["category"]].append(item)

    def means(rows: list[dict[str, Any]]) -> dict[str, float]:
        return {k: sum(r[k] for r in rows) / len(rows) for k in keys} if rows else {k: float("nan") for k in keys}

    return {**means(items), "per_category": {c: means(rows) for c, rows in sorted(by_category.items())}}

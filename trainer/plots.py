"""`motionnft plot RUN_DIR`: training curves from `metrics.jsonl` to `RUN_DIR/curves.png`.

Panels: reward components, evaluation (motion reward, judge), MAS (held-out and of the training
edits), loss terms, x0 norm, dropped and banned prompts, stage times, the rollouts' reward wait, and
how the reward ranks each group's edits against MAS (`trainer.advantages.reward_agreement`).
Matplotlib with the Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.metrics import MetricsLog

PANELS: list[tuple[str, list[str]]] = [
    ("training rewards", ["reward", "reward_motion", "reward_judge", "reward_motion_continuous"]),
    ("evaluation (held-out)", ["eval.motion_reward", "eval.judge"]),
    ("MAS (0-100): held-out, and of the training edits", ["eval.mas", "mas"]),
    ("NFT loss terms", ["loss", "positive", "negative"]),
    ("KL to the base, x0 norm", ["kl", "x0_norm"]),
    ("prompts", ["dropped", "banned"]),
    ("stage seconds", ["stage_s.sample", "stage_s.update", "stage_s.sync", "stage_s.evaluate"]),
    ("rollout: share of time waiting for rewards", ["rollout_wait_share"]),
    ("MAS of the reward's best edit of a group - the group's mean", ["best_mas_gain"]),
    ("within-group correlation of reward and MAS", ["reward_mas_corr"]),
]


def _value(record: dict[str, Any], key: str) -> float | None:
    node: Any = record
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def plot_run(run_dir: Path) -> Path:
    """Draw the curves of a run; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = MetricsLog(run_dir / "metrics.jsonl").read()
    if not records:
        raise FileNotFoundError(f"no metrics in {run_dir / 'metrics.jsonl'}")
    figure, axes = plt.subplots(5, 2, figsize=(12, 16))
    for axis, (title, keys) in zip(axes.flat, PANELS, strict=True):
        for key in keys:
            points = [(r["epoch"], v) for r in records if (v := _value(r, key)) is not None]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", markersize=3, label=key)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        if axis.has_data():
            axis.legend(fontsize=7)
    figure.tight_layout()
    path = run_dir / "curves.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path

"""What a run leaves behind: aggregated evaluations, the demo summary, the curves and the grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.demo import category_intervals, summarise, table
from trainer.evaluation import aggregate
from trainer.grid import matched_rows, save_grid
from trainer.metrics import MetricsLog, StageTimer
from trainer.plots import plot_run


def items(shift: float, n: int = 12) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {"id": f"p{i}", "category": ["pose", "locomotion"][i % 2], "motion_reward": 0.6 + shift + 0.01 * rng.random(),
         "mas": 40 + 100 * shift + rng.random(), "judge": 0.5 + shift + 0.01 * rng.random()}
        for i in range(n)
    ]  # fmt: skip


def write_run(run_dir: Path) -> None:
    log = MetricsLog(run_dir / "metrics.jsonl")
    before, after = items(0.0), items(0.05)
    log.write({"epoch": 0, "eval": {**aggregate(before), "items": before}})
    for epoch in (1, 2):
        timer = StageTimer()
        with timer.stage("sample"):
            pass
        log.write({"epoch": epoch, "reward": 0.7 + 0.01 * epoch, "loss": 3.0, "dropped": 0, "banned": 0,
                   "stage_s": timer.seconds, "rollout_wait_share": 0.01})  # fmt: skip
    log.write({"epoch": 2, "eval": {**aggregate(after), "items": after}})
    # The saved edits: the before edit is the input inverted, the after edit the input itself.
    rng = np.random.default_rng(1)
    scenes = rng.integers(0, 255, (12, 24, 24, 3), dtype=np.uint8)
    noisy = 255 - scenes  # the scene inverted: nothing kept
    ids = np.array([item["id"] for item in before])
    np.savez(run_dir / "eval-00000.npz", ids=ids, inputs=scenes, targets=scenes, edits=noisy)
    np.savez(run_dir / "eval-00002.npz", ids=ids[::-1], inputs=scenes[::-1], targets=scenes[::-1], edits=scenes[::-1])


def test_aggregate_means_overall_and_per_category() -> None:
    rows = [
        {"category": "pose", "motion_reward": 0.2, "mas": 10.0, "judge": 0.4},
        {"category": "pose", "motion_reward": 0.4, "mas": 30.0, "judge": 0.6},
        {"category": "locomotion", "motion_reward": 0.6, "mas": 50.0, "judge": 0.8},
    ]
    result = aggregate(rows)
    assert result["motion_reward"] == pytest.approx(0.4) and result["mas"] == pytest.approx(30.0)
    assert result["per_category"]["pose"]["judge"] == pytest.approx(0.5)
    assert result["per_category"]["locomotion"]["mas"] == pytest.approx(50.0)


def test_summary_has_before_after_and_intervals(tmp_path: Path) -> None:
    write_run(tmp_path)
    summary = summarise(tmp_path)
    assert set(summary) >= {"before", "after", "delta_ci95", "pairs"}
    for metric in ("motion_reward", "mas", "judge"):
        low, high = summary["delta_ci95"][metric]
        assert 0 < low <= high  # a clear +0.05 shift on every pair
        assert summary["after"][metric] > summary["before"][metric]
        assert set(summary["after"]["per_category"]) == {"pose", "locomotion"}
    assert summary["after"]["scene_psnr"] == 60.0  # copies, matched by id whatever the order
    assert summary["before"]["scene_psnr"] < 10 and summary["delta_ci95"]["scene_psnr"][0] > 0
    assert summary["rows"] == ["p1", "p0", "p11", "p10", "p3", "p2", "p5", "p4"]  # categories in turn, by id
    by_category = summary["per_category_ci"]
    assert by_category["confidence"] == pytest.approx(0.975) and by_category["worse"] == []  # two categories
    for category in ("pose", "locomotion"):
        assert by_category["categories"][category]["pairs"] == 6
        assert by_category["categories"][category]["mas"][0] > 0
    json.dumps(summary)  # it goes to summary.json as is
    assert "motion_reward" in table(summary) and "scene_psnr" in table(summary)


def test_a_category_that_falls_is_named_worse() -> None:
    before = items(0.0)
    after = [{**row, "mas": row["mas"] - 10.0} if row["category"] == "pose" else row for row in items(0.0)]
    result = category_intervals(before, after)
    assert result["worse"] == ["pose:mas"]  # locomotion is unchanged: its interval is [0, 0]
    assert result["categories"]["pose"]["mas"] == pytest.approx([-10.0, -10.0])
    assert "pose:mas" in table({**summarise_like(before, after), "per_category_ci": result})


def summarise_like(before: list[dict], after: list[dict]) -> dict:
    """A summary with only what `table` reads, built from two lists of items."""
    zero = {m: [0.0, 0.0] for m in ("motion_reward", "mas", "judge", "scene_psnr")}
    return {"before": {**aggregate(before), "scene_psnr": 0.0}, "after": {**aggregate(after), "scene_psnr": 0.0},
            "delta_ci95": zero}  # fmt: skip


def test_rows_are_matched_by_id_and_an_id_missing_from_either_is_left_out() -> None:
    before = {"ids": np.array(["a", "b", "c"])}
    after = {"ids": np.array(["c", "a"])}  # "b" was dropped from the last evaluation
    assert matched_rows(before, after, ["b", "c", "a"]) == [(2, 0), (0, 1)]


def test_curves_and_grid_are_drawn(tmp_path: Path) -> None:
    write_run(tmp_path)
    assert plot_run(tmp_path).stat().st_size > 10_000
    rng = np.random.default_rng(0)
    for name in ("eval-00000.npz", "eval-00002.npz"):  # (over write_run's evaluations)
        arrays = {k: rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8) for k in ("inputs", "targets", "edits")}
        np.savez(tmp_path / name, ids=np.array(["a", "b", "c"]), **arrays)
    with Image.open(save_grid(tmp_path, rows=3, scale=2)) as grid:
        assert grid.width > 4 * 32 and grid.height > 3 * 32

"""Each ablation of the demo changes exactly the one thing it names, and the benchmark describes each."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_ablations import MEANING, cell
from trainer.config import load_config
from trainer.demo import ABLATIONS

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo_cpu.yaml"


def changed(name: str) -> dict[str, object]:
    base, ablated = load_config(CONFIG).model_dump(), load_config(CONFIG, ABLATIONS[name]).model_dump()
    return {f"{section}.{key}": ablated[section][key] for section in base for key in base[section]
            if base[section][key] != ablated[section][key]}  # fmt: skip


def test_each_ablation_changes_one_setting() -> None:
    assert changed("method") == {}
    assert changed("motion-only") == {"reward.weights": {"motion": 1.0, "judge": 0.0}}
    assert changed("judge-only") == {"reward.weights": {"motion": 0.0, "judge": 1.0}}
    assert changed("six-level") == {"reward.motion_signal": "six_level"}
    assert changed("no-negative") == {"nft.negative_branch": False}
    assert set(MEANING) == set(ABLATIONS)


def test_a_table_cell_is_the_change_and_its_interval() -> None:
    summary = {"before": {"mas": 40.0}, "after": {"mas": 48.5}, "delta_ci95": {"mas": [4.25, 12.5]}}
    assert cell(summary, "mas", 2) == "+8.50 [+4.25, +12.50]"

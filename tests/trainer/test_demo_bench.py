"""The demo's bench step: the base policy and a trained run rendered and scored into `<run>/bench/`."""

from __future__ import annotations

from pathlib import Path

import pytest

from motionnft.contracts.bench import BenchResults
from tests.trainer.test_bench_sources import make_run
from tests.workers.bench_data import DEMO, SIZE, write_bench
from trainer.demo_bench import bench_before_after
from workers.policies.factory import TINY_CHECKPOINT

pytestmark = pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first")


def test_before_and_after_are_rendered_scored_and_reported(tmp_path: Path) -> None:
    make_run(tmp_path / "run")
    manifest = write_bench(tmp_path / "bench", 3)
    run = bench_before_after(DEMO, tmp_path / "run", manifest, SIZE)
    out = tmp_path / "run" / "bench"
    assert {p.name for p in (out / "edits" / "after").glob("*.png")} == {
        p.name for p in (out / "edits" / "before").glob("*.png")
    }
    assert len(list((out / "edits" / "after").glob("*.png"))) == 3
    saved = BenchResults.model_validate_json((out / "results.json").read_text())
    assert saved == run.results and list(saved.models) == ["before", "after"]
    assert all(s.n == 3 and s.mas is not None and s.win_rate is not None for s in saved.models.values())
    # Each item has one comparison: the two Win Rates share it out.
    assert saved.models["before"].win_rate + saved.models["after"].win_rate == pytest.approx(100.0)
    assert "| before |" in (out / "report.md").read_text() and (out / "index.html").is_file()

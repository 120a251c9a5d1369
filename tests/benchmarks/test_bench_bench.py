"""`make bench-bench` on a small bench: three runs measured, and a section that says what was measured."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_bench import MODELS, SECTION, measure, report
from benchmarks.report import write_section


def test_a_small_bench_is_measured_and_reported(tmp_path: Path) -> None:
    cold, cached, pictured, data_s = measure(6, 64, 4, tmp_path / "work")
    assert len(cold.results.items) == 6 * len(MODELS) and cold.busy.reward_s > 0 and cold.busy.judge_s > 0
    assert cached.results.models == cold.results.models  # every score from the cache: the same numbers
    assert (tmp_path / "work" / "out" / "index.html").is_file() and data_s > 0
    body = report(cold, cached, pictured, 6, 64, 4, data_s)
    page = tmp_path / "benchmarks.md"
    write_section(page, SECTION, body)
    text = page.read_text()
    assert "6 synthetic items at 64x64 x 4 models = 24 item scores" in text
    assert "target 100.0 / 100.0" in text and f"<!-- {SECTION}:end -->" in text

"""The manifest: ids, reading back (last line wins, a torn tail), sorting, and settings that must match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from motionnft.mining.manifest import MANIFEST, ManifestWriter, WindowRecord, pair_id, read_manifest
from motionnft.mining.settings import MiningSettings


def record(video: str, start_s: float, status: str = "rejected", reason: str | None = "no_motion") -> WindowRecord:
    return WindowRecord(video=video, start_s=start_s, end_s=start_s + 3, status=status, reason=reason)  # type: ignore[arg-type]


def test_pair_ids_are_stable_and_distinct() -> None:
    assert pair_id("clips/a b.mp4", 3.0) == pair_id("clips/a b.mp4", 3.0)
    assert pair_id("clips/a b.mp4", 3.0).startswith("a_b-0003000-")
    assert pair_id("x/a.mp4", 0.0) != pair_id("y/a.mp4", 0.0)
    assert pair_id("a.mp4", 0.0) != pair_id("a.mp4", 3.0)


def test_writer_appends_then_sorts_and_reading_takes_the_last_line(tmp_path: Path) -> None:
    writer = ManifestWriter(tmp_path, MiningSettings())
    writer.add(record("b.mp4", 0.0))
    writer.add(record("a.mp4", 3.0, "undecided", "judge_error"))
    writer.add(record("a.mp4", 0.0))
    writer.add(record("a.mp4", 3.0, "kept", None))  # the retry of the undecided window
    assert len((tmp_path / MANIFEST).read_text().splitlines()) == 4  # appended as decided
    ordered = writer.close()
    assert [(r.video, r.start_s, r.status) for r in ordered] == [
        ("a.mp4", 0.0, "rejected"), ("a.mp4", 3.0, "kept"), ("b.mp4", 0.0, "rejected")]  # fmt: skip
    lines = (tmp_path / MANIFEST).read_text().splitlines()
    assert [json.loads(line)["video"] for line in lines] == ["a.mp4", "a.mp4", "b.mp4"]
    assert set(json.loads(lines[0])) >= {"video", "start_s", "end_s", "status", "reason", "judged", "measures", "id"}
    assert read_manifest(tmp_path) == {r.key: r for r in ordered}


def test_a_torn_last_line_is_skipped_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    good = record("a.mp4", 0.0).model_dump_json()
    (tmp_path / MANIFEST).write_text(good + "\n" + '{"video": "b.mp4", "sta')
    assert list(read_manifest(tmp_path)) == [("a.mp4", 0.0)]
    (tmp_path / MANIFEST).write_text('{"video": 1}\n' + good + "\n")
    with pytest.raises(ValueError, match=r"manifest.jsonl:1"):
        read_manifest(tmp_path)


def test_resuming_with_other_settings_is_refused(tmp_path: Path) -> None:
    ManifestWriter(tmp_path, MiningSettings()).close()
    ManifestWriter(tmp_path, MiningSettings()).close()  # the same settings resume
    with pytest.raises(ValueError, match="window_s"):
        ManifestWriter(tmp_path, MiningSettings(window_s=2.0))

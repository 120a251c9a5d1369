"""Mining the test corpus on this machine without a judge: every clip's decision and reason, the
dataset in both formats (validated like any MotionEdit dataset), and resuming from the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from motionnft.data.formats import load_dataset
from motionnft.data.records import AS_IS
from motionnft.data.validation import validate
from motionnft.mining.corpus import EXPECTED
from motionnft.mining.manifest import WindowRecord
from motionnft.mining.run import MiningJob, mine_locally, plan
from motionnft.mining.video import find_videos

pytestmark = pytest.mark.timeout(300)


def decisions(records: list[WindowRecord]) -> dict[str, list[tuple[str, str | None]]]:
    found: dict[str, list[tuple[str, str | None]]] = {}
    for record in records:
        found.setdefault(Path(record.video).name, []).append((record.status, record.reason))
    return found


def job(folder: Path, out: Path, **options: object) -> MiningJob:
    videos = [str(v) for v in find_videos(folder)]
    return MiningJob(videos, out, workers=2, progress=False, **options)  # type: ignore[arg-type]


def test_every_clip_gets_its_decision_and_the_dataset_validates(mining_corpus: Path, tmp_path: Path) -> None:
    summary = mine_locally(job(mining_corpus, tmp_path / "out"))
    assert decisions(summary.records) == EXPECTED
    kept = [r for r in summary.records if r.status == "kept"]
    assert all(not r.judged and r.instruction_source == "template" and r.category is None for r in kept)
    assert summary.dataset == tmp_path / "out" / "train.jsonl"
    records = load_dataset(summary.dataset)
    assert sorted(r.id for r in records) == sorted(r.id for r in kept if r.id)
    assert validate(records) == []
    rows = [json.loads(line) for line in summary.dataset.read_text().splitlines()]
    assert {row["judged"] for row in rows} == {False}
    smooth = next(row for row in rows if row["video"].endswith("smooth_motion.mp4") and row["start_s"] == 0.0)
    assert smooth["prompt"] == "Move the subject at the left of the picture to the right."
    sample = records[0].load(AS_IS)
    assert sample.input_image.shape == (144, 192, 3)
    assert summary.examined_windows == 9 and summary.judge_calls == 0


def test_a_rerun_decides_nothing_twice(mining_corpus: Path, tmp_path: Path) -> None:
    first = mine_locally(job(mining_corpus, tmp_path / "out"))
    manifest = (tmp_path / "out" / "manifest.jsonl").read_text()
    again = mine_locally(job(mining_corpus, tmp_path / "out"))
    assert again.examined_windows == 0 and again.records == first.records
    assert (tmp_path / "out" / "manifest.jsonl").read_text() == manifest
    # A judge now would re-judge exactly the windows kept unjudged; the corrupt file is not opened again.
    tasks = plan(job(mining_corpus, tmp_path).videos, {r.key: r for r in first.records}, has_judge=True)
    skipped = {Path(t.video).name: sorted(t.skip) for t in tasks}
    assert "corrupt.mp4" not in skipped
    assert skipped["smooth_motion.mp4"] == [] and skipped["occluded.mp4"] == []
    assert all(skipped[name] == [0.0] for name in ("pan.mp4", "zoom.mp4", "cut.mp4", "static.mp4", "fade.mp4"))


def test_windows_a_killed_run_never_recorded_are_examined(mining_corpus: Path, tmp_path: Path) -> None:
    first = mine_locally(job(mining_corpus, tmp_path / "out"))
    manifest = tmp_path / "out" / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    # Killed after the first window of smooth_motion.mp4 was recorded, before the second.
    lost = [n for n, line in enumerate(lines) if "smooth_motion" in line and '"start_s":3.0' in line]
    assert len(lost) == 1
    manifest.write_text("".join(line for n, line in enumerate(lines) if n != lost[0]))
    again = mine_locally(job(mining_corpus, tmp_path / "out"))
    assert again.examined_windows == 1 and again.records == first.records


def test_parquet_holds_the_same_pairs(mining_corpus: Path, tmp_path: Path) -> None:
    summary = mine_locally(job(mining_corpus, tmp_path / "out", fmt="parquet"))
    assert summary.dataset.suffix == ".parquet"
    records = load_dataset(summary.dataset)
    jsonl = load_dataset(mine_locally(job(mining_corpus, tmp_path / "jsonl")).dataset)
    assert [(r.id, r.prompt) for r in records] == [(r.id, r.prompt) for r in jsonl]
    assert validate(records) == []
    assert (records[0].load(AS_IS).input_image == jsonl[0].load(AS_IS).input_image).all()

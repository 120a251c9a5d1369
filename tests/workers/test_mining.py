"""The miner as a Ray Data pipeline on a local Ray gives the manifest the local process pool gives,
with the judge (a real judge service in front of the fake upstream) and without."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from motionnft.mining.run import MiningJob, mine_locally
from motionnft.mining.video import find_videos
from tests.motionnft.mining.corpus_judge import judge_in_thread
from workers.mining import mine_on_ray

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def urls() -> Iterator[tuple[str, str]]:
    with judge_in_thread() as (upstream, judge_url):
        yield judge_url, upstream.base_url


@pytest.mark.parametrize("judged", [True, False], ids=["judge", "prefilter-only"])
def test_ray_data_gives_the_local_manifest(
    ray_session: None, mining_corpus: Path, urls: tuple[str, str], tmp_path: Path, judged: bool
) -> None:
    judge_url, writer_url = urls if judged else (None, None)
    videos = [str(v) for v in find_videos(mining_corpus)]

    def job(out: Path) -> MiningJob:
        return MiningJob(videos, out, judge_url=judge_url, writer_url=writer_url, workers=2, progress=False)

    local = mine_locally(job(tmp_path / "local"))
    on_ray = mine_on_ray(job(tmp_path / "ray"), None)
    assert on_ray.records == local.records
    assert (tmp_path / "ray" / "manifest.jsonl").read_text() == (tmp_path / "local" / "manifest.jsonl").read_text()
    assert (tmp_path / "ray" / "train.jsonl").read_text() == (tmp_path / "local" / "train.jsonl").read_text()
    kept = [r.id for r in local.records if r.status == "kept"]
    assert len(kept) == (2 if judged else 3)
    for pair in kept:
        for side in ("input", "target"):
            name = f"images/{pair}_{side}.png"
            assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()

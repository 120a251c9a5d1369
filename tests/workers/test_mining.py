"""The miner as a Ray Data pipeline on a local Ray gives the manifest the local process pool gives,
with the judge (a real judge service in front of the fake upstream) and without."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.fake_upstream import DEFAULT_MODEL, ChatCompletionsUpstream, running_upstream
from motionnft.mining.corpus import write_corpus
from motionnft.mining.run import MiningJob, mine_locally
from motionnft.mining.video import find_videos
from services.mllm_judge.app import create_app
from services.mllm_judge.settings import MllmJudgeSettings
from tests.motionnft.mining.corpus_judge import CorpusJudge
from tests.services.harness import in_thread
from workers.mining import mine_on_ray

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus(folder)
    return folder


@pytest.fixture(scope="module")
def urls() -> Iterator[tuple[str, str]]:
    with running_upstream(ChatCompletionsUpstream(responder=CorpusJudge())) as upstream_url:
        settings = MllmJudgeSettings(backend="openai", openai_base_url=upstream_url, openai_model=DEFAULT_MODEL,
                                     openai_max_attempts=1)  # fmt: skip
        with in_thread(create_app(settings)) as judge_url:
            yield judge_url, upstream_url


@pytest.mark.parametrize("judged", [True, False], ids=["judge", "prefilter-only"])
def test_ray_data_gives_the_local_manifest(
    ray_session: None, corpus: Path, urls: tuple[str, str], tmp_path: Path, judged: bool
) -> None:
    judge_url, writer_url = urls if judged else (None, None)
    videos = [str(v) for v in find_videos(corpus)]

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

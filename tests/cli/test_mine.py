"""`motionnft data mine` end to end: the test corpus, a running judge service (its openai backend in
front of the fake upstream, which answers like a judge of these clips) and the instruction writer on
the same upstream. Every clip gets its expected decision and reason; the dataset passes
`motionnft data validate` and trains one demo epoch; a run whose judge failed leaves windows
undecided and a rerun retries only those.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.fake_upstream import DEFAULT_MODEL, ChatCompletionsUpstream, running_upstream
from cli.main import app
from motionnft.mining.corpus import EXPECTED
from motionnft.stack import MLLM_JUDGE, LocalStack
from services.reward_api.app import create_app as create_reward
from services.reward_api.settings import RewardApiSettings
from tests.motionnft.mining.corpus_judge import INSTRUCTION, SUMMARY, CorpusJudge
from tests.services.harness import in_thread
from trainer.config import load_config
from trainer.loop import train
from trainer.metrics import MetricsLog
from workers.policies.factory import TINY_CHECKPOINT

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
JUDGED = {**EXPECTED, "occluded.mp4": [("rejected", "judge:intact")]}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CorpusJudge, str, str]]:
    """(the upstream's judge, judge service URL, writer URL): the judge is a real service process."""
    judge = CorpusJudge()
    with running_upstream(ChatCompletionsUpstream(responder=judge)) as upstream_url:
        env = {"MLLM_JUDGE_BACKEND": "openai", "MLLM_JUDGE_OPENAI_BASE_URL": upstream_url,
               "MLLM_JUDGE_OPENAI_MODEL": DEFAULT_MODEL, "MLLM_JUDGE_OPENAI_MAX_ATTEMPTS": "1",
               "MLLM_JUDGE_CACHE_MB": "0"}  # every test's questions reach the upstream, which counts them  # fmt: skip
        with LocalStack([MLLM_JUDGE.with_env(env)], log_dir=tmp_path_factory.mktemp("logs"), cwd=REPO) as stack:
            yield judge, stack.url("mllm_judge"), upstream_url


def mine(videos: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    args = ["data", "mine", "--videos", str(videos), "--out", str(out), "--workers", "2", "--no-progress"]
    args += extra
    result = runner.invoke(app, args)
    return result.exit_code, result.stdout, result.stderr


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def decisions(out: Path) -> dict[str, list[tuple[str, str | None]]]:
    found: dict[str, list[tuple[str, str | None]]] = {}
    for line in manifest(out):
        found.setdefault(Path(line["video"]).name, []).append((line["status"], line["reason"]))
    return found


@pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first")
def test_curated_corpus_validates_and_trains_one_epoch(
    mining_corpus: Path, services: tuple[CorpusJudge, str, str], tmp_path: Path, ray_session: None
) -> None:
    judge, judge_url, writer_url = services
    out = tmp_path / "mined"
    code, stdout, stderr = mine(mining_corpus, out, "--judge-url", judge_url, "--writer-url", writer_url)
    assert code == 0, stderr
    assert decisions(out) == JUDGED
    assert "10 window(s) of 9 video(s): kept 2, rejected 7, undecided 0, unreadable 1" in stdout
    kept = [line for line in manifest(out) if line["status"] == "kept"]
    assert {(k["judged"], k["category"], k["summary"], k["instruction"], k["instruction_source"]) for k in kept} == {
        (True, "locomotion", SUMMARY, INSTRUCTION, "writer")}  # fmt: skip
    # Only the three windows the prefilter passed reached the judge (one question per rubric each).
    assert judge.asked["curation/stable"] == 3 and judge.asked["writer"] == 2

    result = runner.invoke(app, ["data", "validate", str(out / "train.jsonl")])
    assert result.exit_code == 0, result.stdout
    assert "OK: 2 record(s)" in result.stdout and "locomotion 2" in result.stdout

    with in_thread(create_reward(RewardApiSettings(max_wait_ms=1.0, flow_threads=1))) as reward_url:
        config = load_config(REPO / "configs" / "demo_cpu.yaml", [
            f"run.out_dir={tmp_path / 'run'}", "run.epochs=1", "run.eval_every=100",
            f"data.train_path={out / 'train.jsonl'}", f"data.eval_path={out / 'train.jsonl'}",
            "data.prompts_per_epoch=2", "data.samples_per_prompt=4",
            f"reward.reward_url={reward_url}", f"reward.judge_url={judge_url}", "policy.sampling_steps=3",
            "optim.timesteps_per_sample=2", "ray.num_cpus=2"])  # fmt: skip
        run_dir = train(config, resume=False)
    epochs = [row for row in MetricsLog(run_dir / "metrics.jsonl").read() if "stage_s" in row]
    assert len(epochs) == 1 and epochs[0]["dropped"] == 0 and epochs[0]["optimizer_steps"] > 0


def test_failed_judge_leaves_windows_undecided_and_a_rerun_retries_only_those(
    mining_corpus: Path, services: tuple[CorpusJudge, str, str], tmp_path: Path
) -> None:
    judge, judge_url, writer_url = services
    out = tmp_path / "mined"
    judge.failing = {"judge"}
    try:
        code, stdout, stderr = mine(mining_corpus, out, "--judge-url", judge_url, "--writer-url", writer_url)
    finally:
        judge.failing = set()
    assert code == 0, stderr
    assert "3 undecided (judge or writer failed): run the same command again" in stdout
    first = {(Path(line["video"]).name, line["start_s"]): line for line in manifest(out)}
    undecided = sorted(key for key, line in first.items() if line["status"] == "undecided")
    assert undecided == [("occluded.mp4", 0.0), ("smooth_motion.mp4", 0.0), ("smooth_motion.mp4", 3.0)]
    assert {first[key]["reason"] for key in undecided} == {"judge_error"}
    assert not (out / "train.jsonl").read_text()  # nothing kept while undecided

    before = judge.asked.copy()
    code, stdout, stderr = mine(mining_corpus, out, "--judge-url", judge_url, "--writer-url", writer_url)
    assert code == 0, stderr
    assert decisions(out) == JUDGED
    assert judge.asked["curation/stable"] - before["curation/stable"] == 3  # the undecided three, no more
    again = {(Path(line["video"]).name, line["start_s"]): line for line in manifest(out)}
    assert all(again[key] == line for key, line in first.items() if key not in undecided)


def test_without_a_judge_pairs_are_marked_unjudged(mining_corpus: Path, tmp_path: Path) -> None:
    code, stdout, stderr = mine(mining_corpus, tmp_path / "mined")
    assert code == 0, stderr
    assert decisions(tmp_path / "mined") == EXPECTED
    assert 'no --judge-url: pairs are prefiltered only ("judged": false), not curated' in stdout


def test_usage_errors_are_one_line(mining_corpus: Path, tmp_path: Path) -> None:
    code, _, stderr = mine(tmp_path / "missing", tmp_path / "out")
    assert code == 2 and "no such folder or list of videos" in stderr
    code, _, stderr = mine(mining_corpus, tmp_path / "out", "--set", "min_luma=2")
    assert code == 2 and "min_luma" in stderr
    assert mine(mining_corpus, tmp_path / "out2")[0] == 0
    code, _, stderr = mine(mining_corpus, tmp_path / "out2", "--window-s", "2")
    assert code == 2 and "other settings (window_s)" in stderr

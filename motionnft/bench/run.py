"""`motionnft bench score`, as a function: read the bench and the outputs, score, aggregate, write.

Writes into `out`: `results.json` (`motionnft.contracts.bench.BenchResults`), `report.md`,
`index.html` (+ `assets/`), `cache/` (per-item scores, see `motionnft.bench.cache`) and, when this
run started the services itself, their logs under `logs/`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from motionnft.bench.aggregate import summarise, with_win_rates
from motionnft.bench.cache import ScoreCache, version_tag
from motionnft.bench.html import FlowPictures, write_index_html
from motionnft.bench.items import BenchItem, LazySamples, ModelOutput, load_bench, read_output
from motionnft.bench.report import markdown_report
from motionnft.bench.scoring import BenchScorer, Busy, ItemResult, Outcomes, probe_versions
from motionnft.contracts.bench import BenchResults, ItemScores, Versions, WinRateMode
from motionnft.contracts.client import JudgeClient, RewardClient
from motionnft.progress import StepProgress
from motionnft.stack import MLLM_JUDGE, REWARD_API, LocalStack

log = logging.getLogger("motionnft.bench")
REWARD_TOKEN_ENV, JUDGE_TOKEN_ENV = "MOTIONNFT_REWARD_TOKEN", "MOTIONNFT_JUDGE_TOKEN"


@dataclass(frozen=True)
class ScoreJob:
    """What to score and against which services (None: start that service locally with its defaults)."""

    bench: Path
    models: Mapping[str, Path]
    out: Path
    reward_url: str | None = None
    judge_url: str | None = None
    win_rate: WinRateMode = "scores"
    concurrency: int = 8
    timeout_s: float = 120.0
    draw_flows: bool = True


@dataclass
class ScoreRun:
    """A finished job: its results and where the time went (seconds)."""

    results: BenchResults
    wall_s: float
    busy: Busy
    failed_pairs: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def run_score(job: ScoreJob) -> ScoreRun:
    """Score every model of `job` and write results.json, report.md and index.html into `job.out`."""
    started = time.perf_counter()
    job.out.mkdir(parents=True, exist_ok=True)
    items = load_bench(job.bench)
    load_s = time.perf_counter() - started
    with ExitStack() as stack:
        urls = _service_urls(job, stack)
        run = asyncio.run(_score_all(job, items, *urls))
    run.busy.io_s += load_s
    write_outputs(job, run.results, items)
    run.wall_s = time.perf_counter() - started
    return run


def _service_urls(job: ScoreJob, stack: ExitStack) -> tuple[str, str]:
    """The two services' URLs: the job's, or those of services started here (stopped with `stack`)."""
    quiet = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    specs = []
    if job.reward_url is None:
        specs.append(replace(REWARD_API, env={**quiet, "REWARD_API_FLOW_THREADS": "1"}))
    if job.judge_url is None:
        specs.append(replace(MLLM_JUDGE, env=quiet))
    if not specs:
        return job.reward_url or "", job.judge_url or ""
    local = stack.enter_context(LocalStack(specs, log_dir=job.out / "logs", ready_timeout_s=120, stop_timeout_s=20))
    reward = job.reward_url or local.url(REWARD_API.name)
    judge = job.judge_url or local.url(MLLM_JUDGE.name)
    return reward, judge


async def _score_all(job: ScoreJob, items: list[BenchItem], reward_url: str, judge_url: str) -> ScoreRun:
    tokens = os.environ.get(REWARD_TOKEN_ENV) or None, os.environ.get(JUDGE_TOKEN_ENV) or None
    timeout_s, deadline_s = job.timeout_s, 3 * job.timeout_s
    async with (
        RewardClient(reward_url, token=tokens[0], timeout_s=timeout_s, deadline_s=deadline_s) as reward,
        JudgeClient(judge_url, token=tokens[1], timeout_s=timeout_s, deadline_s=deadline_s) as judge,
    ):
        versions = await probe_versions(reward, judge, items[0], job.win_rate)
        rubrics = {k: v for k, v in versions.rubrics.items() if k != "compare"}
        score_tag = version_tag(versions.flow_backend, versions.reward_version, versions.judge_backend,
                                versions.judge_model, json.dumps(rubrics, sort_keys=True))  # fmt: skip
        compare_tag = version_tag(versions.judge_backend, versions.judge_model, versions.rubrics.get("compare", ""))
        cache = ScoreCache(job.out / "cache", score_tag, compare_tag)
        scorer = BenchScorer(reward, judge, cache, job.win_rate, job.concurrency)
        scores: list[ItemScores] = []
        outcomes: Outcomes = {}
        failed_pairs = 0
        with StepProgress("item", total=len(items), logger=log) as progress:
            progress.stage("score")
            for done in asyncio.as_completed([_score_one(scorer, item, job.models) for item in items]):
                result = await done
                scores += result.scores
                outcomes |= result.outcomes
                failed_pairs += result.failed_pairs
                progress.advance()
    results = assemble(job, items, scores, outcomes if job.win_rate == "judge" else None, versions)
    return ScoreRun(results, 0.0, scorer.busy, failed_pairs)


async def _score_one(scorer: BenchScorer, item: BenchItem, models: Mapping[str, Path]) -> ItemResult:
    started = time.perf_counter()
    outputs: dict[str, ModelOutput] = {name: read_output(folder, item.id) for name, folder in models.items()}
    scorer.busy.io_s += time.perf_counter() - started
    return await scorer.score_item(item, outputs)


def assemble(job: ScoreJob, items: list[BenchItem], scores: list[ItemScores], outcomes: Outcomes | None,
             versions: Versions) -> BenchResults:  # fmt: skip
    """The results object: items in bench order, then model order."""
    models = list(job.models)
    order = {item.id: i for i, item in enumerate(items)}
    scores = sorted(scores, key=lambda s: (order[s.item], models.index(s.model)))
    summaries, pairs = summarise(scores, models, outcomes)
    return BenchResults(bench=str(job.bench), items_total=len(items), models=summaries, pairs=pairs,
                        items=with_win_rates(scores, models, outcomes), versions=versions)  # fmt: skip


def write_outputs(job: ScoreJob, results: BenchResults, items: list[BenchItem]) -> None:
    """results.json and report.md (each replaced whole, never half-written), then the HTML page."""
    _write_atomic(job.out / "results.json", results.model_dump_json(indent=1))
    _write_atomic(job.out / "report.md", markdown_report(results))
    flows = FlowPictures.cpu() if job.draw_flows else None
    write_index_html(job.out, results, LazySamples(items), job.models, flows)


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)

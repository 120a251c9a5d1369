"""Score every model's outputs on a bench through the reward API and the judge service.

Per item, one reward request (the input, the target and every model's edit not yet cached: the
target flow is computed once for all of them) gives MAS and the training reward; one judge request
gives Fidelity, Preservation and Coherence (0-5) under the project's versioned rubrics; with
`win_rate="judge"` one compare request judges every new pair of models (both orders, averaged by the
service). Items run `concurrency` at a time. A failed call or an unjudged edit makes that model's item
`failed` with the reason; it never scores 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import TypeVar

import httpx

from motionnft.bench.cache import ScoreCache
from motionnft.bench.items import BenchItem, ModelOutput
from motionnft.contracts.bench import RUBRIC_METRICS, ItemScores, Versions, WinRateMode
from motionnft.contracts.client import JudgeClient, RewardClient
from motionnft.contracts.judge import ComparePair, CompareRequest, JudgeGroup, JudgeScoreRequest
from motionnft.contracts.motion import MotionGroup, MotionScoreRequest
from motionnft.contracts.problems import ServiceError

Outcomes = dict[tuple[str, str, str], float]
"""(item, model a, model b) -> a's outcome against b: 1 win, 0.5 tie, 0 loss."""
OUTCOME = {"a": 1.0, "tie": 0.5, "b": 0.0}
T = TypeVar("T")
# What a service call can fail with once the client has retried: the item fails, the run goes on.
CALL_ERRORS = (ServiceError, httpx.HTTPError, OSError, TimeoutError)


@dataclass
class Busy:
    """Seconds spent waiting on each kind of call, summed over concurrent items (so >= wall share)."""

    reward_s: float = 0.0
    judge_s: float = 0.0
    compare_s: float = 0.0
    io_s: float = 0.0


@dataclass
class ItemResult:
    scores: list[ItemScores]
    outcomes: Outcomes = field(default_factory=dict)
    failed_pairs: int = 0


async def probe_versions(reward: RewardClient, judge: JudgeClient, item: BenchItem, win_rate: WinRateMode) -> Versions:
    """What the services are running now, read from their answers to one small real request."""
    answer = await reward.score(_motion_request(item, [item.target_b64]))
    rated = await judge.score(_judge_request(item, [item.target_b64]))
    rubrics = dict(rated.rubrics)
    if win_rate == "judge":
        pair = ComparePair(instruction=item.prompt, source=item.source_b64, a=item.target_b64, b=item.target_b64,
                           target=item.target_b64)  # fmt: skip
        rubrics["compare"] = (await judge.compare(CompareRequest(pairs=[pair]))).rubric
    return Versions(flow_backend=answer.flow_backend, reward_version=answer.reward_version,
                    judge_backend=rated.backend, judge_model=rated.model,
                    judge_is_language_model=rated.is_language_model, rubrics=rubrics, win_rate=win_rate)  # fmt: skip


def _motion_request(item: BenchItem, edits: list[str]) -> MotionScoreRequest:
    return MotionScoreRequest(groups=[MotionGroup(id=item.id, source=item.source_b64, target=item.target_b64,
                                                  edits=edits)])  # fmt: skip


def _judge_request(item: BenchItem, edits: list[str]) -> JudgeScoreRequest:
    group = JudgeGroup(id=item.id, instruction=item.prompt, source=item.source_b64, target=item.target_b64, edits=edits)
    return JudgeScoreRequest(groups=[group], rubrics=list(RUBRIC_METRICS))


class BenchScorer:
    """Scores items against two running services, through `cache`."""

    def __init__(
        self, reward: RewardClient, judge: JudgeClient, cache: ScoreCache, win_rate: WinRateMode, concurrency: int = 8
    ) -> None:
        self.reward, self.judge, self.cache, self.win_rate = reward, judge, cache, win_rate
        self.busy = Busy()
        self._slots = asyncio.Semaphore(concurrency)

    async def score_item(self, item: BenchItem, outputs: Mapping[str, ModelOutput]) -> ItemResult:
        """Every model's scores on `item` (`outputs`: model -> its output, read from disk)."""
        async with self._slots:
            found = {m: o for m, o in outputs.items() if o.status == "found"}
            todo = [m for m, o in found.items() if self.cache.score(item.id, _sha(o)) is None]
            errors = await self._score_new(item, {m: found[m] for m in todo})
            scores = [self._item_scores(item, model, output, errors.get(model)) for model, output in outputs.items()]
            result = ItemResult(scores)
            if self.win_rate == "judge":
                await self._compare(item, {s.model: found[s.model] for s in scores if s.status == "scored"}, result)
            return result

    async def _score_new(self, item: BenchItem, outputs: dict[str, ModelOutput]) -> dict[str, str]:
        """Score `outputs` and cache the successes; returns model -> why its edit has no score."""
        if not outputs:
            return {}
        models, edits = list(outputs), [o.edit_b64 or "" for o in outputs.values()]
        motion, rated = await asyncio.gather(self._timed("reward_s", self.reward.score(_motion_request(item, edits))),
                                             self._timed("judge_s", self.judge.score(_judge_request(item, edits))),
                                             return_exceptions=True)  # fmt: skip
        errors: dict[str, str] = {}
        for name, answer in (("reward API", motion), ("judge", rated)):
            if isinstance(answer, BaseException):
                if not isinstance(answer, CALL_ERRORS):
                    raise answer
                errors |= {m: f"{name}: {answer}" for m in models}
        if errors:
            return errors
        assert not isinstance(motion, BaseException) and not isinstance(rated, BaseException)
        for k, model in enumerate(models):
            rubric_scores = rated.groups[0].scores[k]
            bad = [f"{r}: {s.error}" for r, s in rubric_scores.items() if not s.ok or s.raw is None]
            if bad:
                errors[model] = "judge: " + "; ".join(bad)
                continue
            edit = motion.groups[0].scores[k]
            metrics = {r: float(rubric_scores[r].raw) for r in RUBRIC_METRICS}  # type: ignore[arg-type]  # checked
            metrics |= {"mas": edit.mas, "motion_reward": edit.reward}
            self.cache.put_score(item.id, _sha(outputs[model]), metrics)
        return errors

    def _item_scores(self, item: BenchItem, model: str, output: ModelOutput, error: str | None) -> ItemScores:
        record: dict[str, object] = {"item": item.id, "model": model, "category": item.category}
        cached = self.cache.score(item.id, output.sha256) if output.sha256 else None
        if output.status != "found":
            record |= {"status": output.status, "error": output.error}
        elif error is not None or cached is None:
            record |= {"status": "failed", "error": error or "no score"}
        else:
            rubric = {r: float(cached[r]) for r in RUBRIC_METRICS}
            record |= {"status": "scored", **rubric, "overall": sum(rubric.values()) / len(rubric),
                       "mas": float(cached["mas"]), "motion_reward": float(cached["motion_reward"])}  # fmt: skip
        return ItemScores.model_validate(record)

    async def _compare(self, item: BenchItem, outputs: dict[str, ModelOutput], result: ItemResult) -> None:
        """Judge every pair of scored outputs not yet cached; record every pair's outcome in `result`."""
        pairs = list(combinations(sorted(outputs), 2))
        new = [(a, b) for a, b in pairs if self.cache.outcome(item.id, _sha(outputs[a]), _sha(outputs[b])) is None]
        if new:
            request = CompareRequest(pairs=[
                ComparePair(id=f"{a}|{b}", instruction=item.prompt, source=item.source_b64, a=outputs[a].edit_b64 or "",
                            b=outputs[b].edit_b64 or "", target=item.target_b64) for a, b in new])  # fmt: skip
            try:
                answer = await self._timed("compare_s", self.judge.compare(request))
            except CALL_ERRORS:
                result.failed_pairs += len(new)
            else:
                for (a, b), judged in zip(new, answer.pairs, strict=True):
                    if judged.verdict is None:
                        result.failed_pairs += 1
                        continue
                    self.cache.put_outcome(item.id, _sha(outputs[a]), _sha(outputs[b]), OUTCOME[judged.verdict])
        for a, b in pairs:
            outcome = self.cache.outcome(item.id, _sha(outputs[a]), _sha(outputs[b]))
            if outcome is not None:
                result.outcomes[(item.id, a, b)] = outcome

    async def _timed(self, kind: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await call
        finally:
            setattr(self.busy, kind, getattr(self.busy, kind) + time.perf_counter() - started)


def _sha(output: ModelOutput) -> str:
    assert output.sha256 is not None, "only found outputs have a hash"
    return output.sha256

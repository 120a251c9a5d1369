"""The judge service's scorer: request checks, decoding off the loop, questions, cache, backend.

Every (edit, rubric) becomes one question to the backend; a comparison becomes two (a shown first,
then b shown first) whose answers are averaged to remove position bias; a video window to curate
becomes five choice questions and, when asked, one describe question (`curation.py`). Identical
questions (same backend, model, rubric version, instruction and images; for text also the token
budget) are answered from a bounded cache; failures are never cached and never become numbers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from prometheus_client import Counter, Gauge

from motionnft.caching import LRUCache
from motionnft.contracts.images import DecodedImage
from motionnft.contracts.judge import (
    CompareRequest,
    CompareResponse,
    CompareResult,
    CurateRequest,
    CurateResponse,
    JudgeGroupScores,
    JudgeScoreRequest,
    JudgeScoreResponse,
    RubricScore,
)
from motionnft.contracts.problems import FieldProblem
from motionnft.judge_scores import debiased_preference, expected_rating, verdict
from services.mllm_judge.backends.base import Answer, JudgeBackend, JudgeFailure, JudgeQuestion, TextAnswer
from services.mllm_judge.backends.factory import build_backend
from services.mllm_judge.curation import (
    check_curate_request,
    curate_result,
    result_errors,
    rubric_versions,
    summary_question,
    window_questions,
)
from services.mllm_judge.rubrics import COMPARE, RUBRICS, Rubric
from services.mllm_judge.settings import MllmJudgeSettings
from services.serving.batching import Overloaded
from services.serving.images import decode_named, limit_problem
from services.serving.metrics import ServiceMetrics
from services.serving.problems import ProblemError

log = logging.getLogger(__name__)

Cached = list[float] | str  # a choice distribution or a text answer


class JudgeScorer:
    """Owns the backend and the answer cache; turns wire requests into questions and back."""

    def __init__(self, settings: MllmJudgeSettings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.backend: JudgeBackend = build_backend(settings)
        self.cache: LRUCache[tuple[str, ...], Cached] = LRUCache(int(settings.cache_mb * 2**20), _answer_bytes)
        ns, reg = metrics.namespace, metrics.registry
        self.cache_hits = Counter("answer_cache_hits", "Questions answered from cache", namespace=ns, registry=reg)
        self.questions = Counter("questions", "Questions sent to the backend", namespace=ns, registry=reg)
        self.failures = Counter("question_failures", "Questions with no usable answer", namespace=ns, registry=reg)
        cache_bytes = Gauge("answer_cache_bytes", "Bytes held by cached answers", namespace=ns, registry=reg)
        cache_bytes.set_function(lambda: self.cache.bytes)
        cache_entries = Gauge("answer_cache_entries", "Answers cached", namespace=ns, registry=reg)
        cache_entries.set_function(lambda: len(self.cache))
        limit = Gauge("answer_cache_limit_bytes", "Byte budget of the answer cache", namespace=ns, registry=reg)
        limit.set(self.cache.max_bytes)

    @property
    def identity(self) -> dict[str, Any]:
        """Who judged: backend, model, and whether it is a language model at all."""
        return {
            "backend": self.backend.name,
            "model": self.backend.model,
            "is_language_model": self.backend.is_language_model,
        }

    async def load(self) -> None:
        await self.backend.load()

    async def close(self) -> None:
        await self.backend.close()

    async def score(self, request: JudgeScoreRequest) -> JudgeScoreResponse:
        """Rate every edit under every requested rubric; a failed item carries its error."""
        rubrics = self._check_score_request(request)
        named: list[tuple[str, str]] = []
        for g, group in enumerate(request.groups):
            named += [(f"groups[{g}].source", group.source)]
            named += [(f"groups[{g}].target", group.target)] if group.target is not None else []
            named += [(f"groups[{g}].edits[{k}]", edit) for k, edit in enumerate(group.edits)]
        images = iter(await asyncio.to_thread(self._decode, named))
        questions: list[JudgeQuestion] = []
        for group in request.groups:
            source = next(images)
            target = next(images) if group.target is not None else None
            for edit in [next(images) for _ in group.edits]:
                questions += [_question(r, group.instruction, (source, edit), target) for r in rubrics]
        answers = iter(await self._answer(questions))
        groups = [
            JudgeGroupScores(
                id=group.id,
                scores=[{r.name: _rubric_score(next(answers)) for r in rubrics} for _ in group.edits],
            )
            for group in request.groups
        ]
        self._require_some_success(questions, groups)
        return JudgeScoreResponse(groups=groups, rubrics={r.name: r.version for r in rubrics}, **self.identity)

    async def compare(self, request: CompareRequest) -> CompareResponse:
        """P(a better than b) per pair, asked in both orders and averaged."""
        self._check_compare_request(request)
        named: list[tuple[str, str]] = []
        for i, pair in enumerate(request.pairs):
            named += [(f"pairs[{i}].source", pair.source), (f"pairs[{i}].a", pair.a), (f"pairs[{i}].b", pair.b)]
            named += [(f"pairs[{i}].target", pair.target)] if pair.target is not None else []
        images = iter(await asyncio.to_thread(self._decode, named))
        questions: list[JudgeQuestion] = []
        for pair in request.pairs:
            source, a, b = next(images), next(images), next(images)
            target = next(images) if pair.target is not None else None
            questions += [_question(COMPARE, pair.instruction, (source, a, b), target),
                          _question(COMPARE, pair.instruction, (source, b, a), target)]  # fmt: skip
        answers = await self._answer(questions)
        results = [
            _compare_result(pair.id, answers[2 * i], answers[2 * i + 1], self.settings.tie_margin)
            for i, pair in enumerate(request.pairs)
        ]
        if results and all(r.error is not None for r in results):
            raise _all_failed([r.error or "" for r in results])
        return CompareResponse(pairs=results, rubric=COMPARE.version, tie_margin=self.settings.tie_margin,
                               **self.identity)  # fmt: skip

    async def curate(self, request: CurateRequest) -> CurateResponse:
        """Per video window: P(Yes) of each curation criterion, its motion category, and a summary."""
        check_curate_request(request, self.settings.max_curate_items, self.backend)
        named = [(f"items[{i}].{side}", data) for i, it in enumerate(request.items)
                 for side, data in (("first", it.first), ("last", it.last))]  # fmt: skip
        images = iter(await asyncio.to_thread(self._decode, named))
        windows = [(next(images), next(images)) for _ in request.items]
        rated = [q for first, last in windows for q in window_questions(first, last)]
        told = [summary_question(first, last) for first, last in windows] if request.summary else []
        answers, texts = await asyncio.gather(self._answer(rated), self._describe(told))
        per = len(rated) // len(windows)
        results = [
            curate_result(item.id, answers[i * per : (i + 1) * per], texts[i] if request.summary else None)
            for i, item in enumerate(request.items)
        ]
        errors = [e for r in results for e in result_errors(r)]
        if len(errors) == len(rated) + len(told):
            raise _all_failed(errors)
        return CurateResponse(items=results, rubrics=rubric_versions(request.summary), **self.identity)

    def _decode(self, named: Sequence[tuple[str, str]]) -> list[DecodedImage]:
        # Only a server-side model wants the client's bytes forwarded; keep them only for that backend.
        return decode_named(named, self.settings.image_limits, max_request_pixels=self.settings.max_request_pixels,
                            keep_data_urls=self.backend.name == "openai")  # fmt: skip

    async def _answer(self, questions: Sequence[JudgeQuestion]) -> list[Answer]:
        """Answers in order: cached where possible, the rest from the backend in one call."""
        keys = [self._cache_key(q) for q in questions]
        return cast(list[Answer], await self._cached(questions, keys, self.backend.answer))

    async def _describe(self, questions: Sequence[JudgeQuestion]) -> list[TextAnswer]:
        """Text answers in order, like `_answer`; the token budget is part of the question."""
        budget = self.settings.describe_max_tokens
        keys = [(*self._cache_key(q), f"max_tokens={budget}") for q in questions]

        async def describe(asked: Sequence[JudgeQuestion]) -> list[TextAnswer]:
            return await self.backend.describe(asked, budget)

        return cast(list[TextAnswer], await self._cached(questions, keys, describe))

    async def _cached(
        self,
        questions: Sequence[JudgeQuestion],
        keys: Sequence[tuple[str, ...]],
        ask: Callable[[Sequence[JudgeQuestion]], Awaitable[Sequence[Cached | JudgeFailure]]],
    ) -> list[Cached | JudgeFailure]:
        answers: list[Cached | JudgeFailure | None] = [self.cache.get(k) for k in keys]
        missing = [i for i, a in enumerate(answers) if a is None]
        self.cache_hits.inc(len(questions) - len(missing))
        if missing:
            self.questions.inc(len(missing))
            try:
                fresh = await ask([questions[i] for i in missing])
            except Overloaded as exc:
                retry = {"Retry-After": str(self.settings.retry_after_s)}
                raise ProblemError(503, "overloaded", "Judge queue is full", str(exc), headers=retry) from None
            for i, answer in zip(missing, fresh, strict=True):
                answers[i] = answer
                if isinstance(answer, JudgeFailure):
                    self.failures.inc()
                    log.warning("judge question failed: %s", answer)
                else:
                    self.cache.put(keys[i], answer)
        return [a for a in answers if a is not None]

    def _cache_key(self, question: JudgeQuestion) -> tuple[str, ...]:
        return (self.backend.name, self.backend.model, question.rubric_version, question.prompt, *question.digests)

    def _check_score_request(self, request: JudgeScoreRequest) -> list[Rubric]:
        s, problems = self.settings, []
        if not request.groups or len(request.groups) > s.max_groups:
            problems.append(FieldProblem(loc="groups", msg=f"{len(request.groups)} groups; 1 to {s.max_groups}"))
        if not request.rubrics:
            problems.append(FieldProblem(loc="rubrics", msg="at least one rubric is required"))
        for i, name in enumerate(request.rubrics):
            if name not in RUBRICS:
                problems.append(
                    FieldProblem(loc=f"rubrics[{i}]", msg=f"unknown rubric {name[:64]!r}; one of {list(RUBRICS)}")
                )
        for g, group in enumerate(request.groups):
            if not group.edits or len(group.edits) > s.max_edits_per_group:
                msg = f"{len(group.edits)} edits; 1 to {s.max_edits_per_group}"
                problems.append(FieldProblem(loc=f"groups[{g}].edits", msg=msg))
            problems += self._check_instruction(group.instruction, f"groups[{g}].instruction")
            problems += self._check_target(group.target, f"groups[{g}].target")
        if problems:
            raise limit_problem(problems)
        return [RUBRICS[name] for name in dict.fromkeys(request.rubrics)]

    def _check_compare_request(self, request: CompareRequest) -> None:
        s, problems = self.settings, []
        if not request.pairs or len(request.pairs) > s.max_pairs:
            problems.append(FieldProblem(loc="pairs", msg=f"{len(request.pairs)} pairs; 1 to {s.max_pairs}"))
        for i, pair in enumerate(request.pairs):
            problems += self._check_instruction(pair.instruction, f"pairs[{i}].instruction")
            problems += self._check_target(pair.target, f"pairs[{i}].target")
        if problems:
            raise limit_problem(problems)

    def _check_target(self, target: str | None, loc: str) -> list[FieldProblem]:
        # The weight-free stand-in rates by closeness to the target: without one it has no answer.
        if target is None and not self.backend.is_language_model:
            return [FieldProblem(loc=loc, msg=f"the {self.backend.name} backend needs the target image")]
        return []

    def _check_instruction(self, instruction: str, loc: str) -> list[FieldProblem]:
        if not instruction.strip():
            return [FieldProblem(loc=loc, msg="the instruction is blank")]
        if len(instruction) > self.settings.max_instruction_chars:
            return [FieldProblem(loc=loc, msg=f"longer than {self.settings.max_instruction_chars} characters")]
        return []

    @staticmethod
    def _require_some_success(questions: Sequence[JudgeQuestion], groups: list[JudgeGroupScores]) -> None:
        errors = [s.error for g in groups for edit in g.scores for s in edit.values() if s.error is not None]
        if questions and len(errors) == len(questions):
            raise _all_failed(errors)


def _answer_bytes(key: tuple[str, ...], answer: Cached) -> int:
    """What a cached answer costs: its key's text (the prompt dominates), its floats or text, and overhead."""
    size = len(answer.encode()) if isinstance(answer, str) else 32 * len(answer)
    return sum(len(part) for part in key) + size + 300


def _question(
    rubric: Rubric, instruction: str, images: tuple[DecodedImage, ...], target: DecodedImage | None
) -> JudgeQuestion:
    digests = tuple(i.digest for i in images) + ((target.digest,) if target is not None else ())
    return JudgeQuestion(
        kind=rubric.kind, rubric=rubric.name, rubric_version=rubric.version, prompt=rubric.render(instruction),
        images=tuple(i.pixels for i in images), choices=rubric.choices,
        target=target.pixels if target is not None else None, digests=digests,
        data_urls=tuple(i.data_url for i in images),
    )  # fmt: skip


def _rubric_score(answer: Answer) -> RubricScore:
    if isinstance(answer, JudgeFailure):
        return RubricScore(error=str(answer))
    raw, score = expected_rating(answer)
    return RubricScore(score=score, raw=raw, levels=list(answer))


def _compare_result(pair_id: str | None, first: Answer, second: Answer, margin: float) -> CompareResult:
    for answer in (first, second):
        if isinstance(answer, JudgeFailure):
            return CompareResult(id=pair_id, error=str(answer))
    assert not isinstance(first, JudgeFailure) and not isinstance(second, JudgeFailure)
    # a is choice "A" when shown first and choice "B" when shown second.
    p_a = debiased_preference(first[0], second[1])
    return CompareResult(id=pair_id, prob_a=p_a, verdict=verdict(p_a, margin))  # type: ignore[arg-type]


def _all_failed(errors: Sequence[str]) -> ProblemError:
    """Every item failed: the judge upstream is down or broken, which is the gateway's failure (502)."""
    return ProblemError(502, "judge-failed", "The judge gave no usable answer for any item", errors[0])

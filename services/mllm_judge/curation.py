"""Curation of video windows (`POST /v1/judge/curate`): the questions a window becomes and the result
its answers make, for the video miner.

A window is its first and last frame, shown in that order. It becomes four yes/no questions (the
CURATION_CRITERIA rubrics; each criterion is P(Yes), renormalised over Yes/No from the first answer
token), one category question (the distribution over the numbers 1..6, whose argmax names one of
MOTION_CATEGORIES) and, when the request asks for it, one describe question (free text). The
weight-free similarity backend is not a language model and can answer none of them: such a request
is refused (422) before any image is decoded, rather than answered with one error per window.
"""

from __future__ import annotations

from collections.abc import Sequence

from motionnft.contracts.images import DecodedImage
from motionnft.contracts.judge import (
    CURATION_CRITERIA,
    MOTION_CATEGORIES,
    CategoryGuess,
    CurateRequest,
    CurateResult,
    MotionSummary,
    RubricScore,
)
from motionnft.contracts.problems import FieldProblem
from services.mllm_judge.backends.base import Answer, JudgeBackend, JudgeFailure, JudgeQuestion, TextAnswer
from services.mllm_judge.rubrics import CATEGORY, CRITERIA, SUMMARY, Rubric
from services.serving.images import limit_problem
from services.serving.problems import ProblemError

RATED: tuple[Rubric, ...] = (*CRITERIA.values(), CATEGORY)
"""The choice questions of every window, in the order their answers come back."""


def check_curate_request(request: CurateRequest, max_items: int, backend: JudgeBackend) -> None:
    """422 unless a language model judges and the request holds 1 to `max_items` windows."""
    if not backend.is_language_model:
        raise ProblemError(
            422, "not-a-language-model", "This judge cannot curate",
            f"the {backend.name} backend is not a language model and cannot judge curation criteria; "
            "run the judge with MLLM_JUDGE_BACKEND=openai or transformers",
        )  # fmt: skip
    if not request.items or len(request.items) > max_items:
        raise limit_problem([FieldProblem(loc="items", msg=f"{len(request.items)} items; 1 to {max_items}")])


def rubric_versions(summary: bool) -> dict[str, str]:
    """Rubric name -> version of every rubric a request asks (the summary's only when asked)."""
    return {r.name: r.version for r in (*RATED, *((SUMMARY,) if summary else ()))}


def window_questions(first: DecodedImage, last: DecodedImage) -> list[JudgeQuestion]:
    """The choice questions of one window, in RATED order."""
    return [_question(rubric, first, last) for rubric in RATED]


def summary_question(first: DecodedImage, last: DecodedImage) -> JudgeQuestion:
    return _question(SUMMARY, first, last)


def _question(rubric: Rubric, first: DecodedImage, last: DecodedImage) -> JudgeQuestion:
    return JudgeQuestion(
        kind=rubric.kind, rubric=rubric.name, rubric_version=rubric.version, prompt=rubric.template,
        images=(first.pixels, last.pixels), choices=rubric.choices, digests=(first.digest, last.digest),
        data_urls=(first.data_url, last.data_url),
    )  # fmt: skip


def curate_result(item_id: str | None, answers: Sequence[Answer], text: TextAnswer | None) -> CurateResult:
    """One window's result from its RATED answers and its summary answer (None: none was asked)."""
    *criteria, category = answers
    return CurateResult(
        id=item_id,
        criteria={name: criterion_score(a) for name, a in zip(CURATION_CRITERIA, criteria, strict=True)},
        category=category_guess(category),
        summary=None if text is None else motion_summary(text),
    )


def criterion_score(answer: Answer) -> RubricScore:
    """A yes/no answer [P(Yes), P(No)] as a score: score = raw = P(Yes)."""
    if isinstance(answer, JudgeFailure):
        return RubricScore(error=str(answer))
    return RubricScore(score=answer[0], raw=answer[0], levels=list(answer))


def category_guess(answer: Answer) -> CategoryGuess:
    """The distribution over the numbers 1..6 as categories; the most likely one (first on a tie)."""
    if isinstance(answer, JudgeFailure):
        return CategoryGuess(error=str(answer))
    probs = dict(zip(MOTION_CATEGORIES, answer, strict=True))
    return CategoryGuess(category=max(probs, key=probs.__getitem__), probs=probs)


def motion_summary(text: TextAnswer) -> MotionSummary:
    return MotionSummary(error=str(text)) if isinstance(text, JudgeFailure) else MotionSummary(text=text)


def result_errors(result: CurateResult) -> list[str]:
    """The errors of one window's answers (one per failed question)."""
    parts: list[RubricScore | CategoryGuess | MotionSummary] = [*result.criteria.values(), result.category]
    parts += [result.summary] if result.summary is not None else []
    return [p.error for p in parts if p.error is not None]

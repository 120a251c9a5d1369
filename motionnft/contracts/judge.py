"""Wire contract of the MLLM judge service (`POST /v1/judge/score`, `/v1/judge/compare`, `/v1/judge/curate`).

Field names here are the public contract: add fields, never rename these. Images are base64 text
(PNG, JPEG or WebP). A judgement that could not be had carries `error` and no number: a failure
never looks like a score.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from motionnft.contracts.limits import MAX_EDITS, MAX_GROUPS, MAX_PAIRS, MAX_RUBRICS, MAX_TEXT_CHARS

JUDGE_SCORE_PATH = "/v1/judge/score"
JUDGE_COMPARE_PATH = "/v1/judge/compare"
JUDGE_CURATE_PATH = "/v1/judge/curate"

MOTION_CATEGORIES: tuple[str, ...] = (
    "pose",
    "locomotion",
    "object_state",
    "orientation",
    "subject_object",
    "inter_subject",
)
"""The six MotionEdit categories (docs/method.md), in the order the curation prompt numbers them 1..6."""

CURATION_CRITERIA: tuple[str, ...] = ("stable", "motion", "intact", "quality")
"""The paper's curation criteria of a video window, each a yes/no question about its first and last frame:
- stable: the setting is stable (background, viewpoint and lighting unchanged);
- motion: a meaningful motion change happened;
- intact: the subjects stay intact (no occlusion, distortion or disappearance);
- quality: both frames are of high visual quality.
"""


class JudgeGroup(BaseModel):
    """One instruction's group: the original image and K edits to rate."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=256, description="Caller's id, echoed back.")
    instruction: str = Field(
        min_length=1, max_length=MAX_TEXT_CHARS, description="The editing instruction the edits should follow."
    )
    source: str = Field(description="The original image, base64.")
    target: str | None = Field(
        default=None, description="Ground-truth edit, base64 (only the similarity backend uses it)."
    )
    edits: list[str] = Field(max_length=MAX_EDITS, description="Edited images to rate, base64, in order.")


class JudgeScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[JudgeGroup] = Field(max_length=MAX_GROUPS)
    rubrics: list[str] = Field(
        default=["edit"], max_length=MAX_RUBRICS, description="Rubric names: edit, fidelity, preservation, coherence."
    )


class RubricScore(BaseModel):
    """One rubric's judgement of one edit: score, raw and levels, or an error and no number."""

    score: float | None = Field(default=None, description="Expected rating / 5, in [0, 1].")
    raw: float | None = Field(default=None, description="Expected rating on the 0-5 scale.")
    levels: list[float] | None = Field(default=None, description="Probability of each level 0..5.")
    error: str | None = Field(default=None, description="Why there is no score for this item.")

    @model_validator(mode="after")
    def _score_or_error(self) -> RubricScore:
        has_numbers = self.score is not None and self.raw is not None and self.levels is not None
        if has_numbers == (self.error is not None):
            raise ValueError("a rubric score carries either score, raw and levels, or an error")
        return self

    @property
    def ok(self) -> bool:
        return self.error is None


class JudgeGroupScores(BaseModel):
    id: str | None = None
    scores: list[dict[str, RubricScore]] = Field(description="Per edit, in order: rubric name -> score.")


class JudgeScoreResponse(BaseModel):
    groups: list[JudgeGroupScores]
    backend: str = Field(description="openai, transformers, or similarity.")
    model: str = Field(description="The judging model (or what stands in for one).")
    is_language_model: bool = Field(description="False for the weight-free similarity stand-in.")
    rubrics: dict[str, str] = Field(description="Rubric name -> version used.")


class ComparePair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=256)
    instruction: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    source: str = Field(description="The original image, base64.")
    a: str = Field(description="First edit, base64.")
    b: str = Field(description="Second edit, base64.")
    target: str | None = Field(default=None, description="Ground-truth edit (similarity backend only).")


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairs: list[ComparePair] = Field(max_length=MAX_PAIRS)


class CompareResult(BaseModel):
    """P(a is the better edit), both orders averaged; or an error and no number."""

    id: str | None = None
    prob_a: float | None = Field(default=None, description="Probability that a is better, in [0, 1].")
    verdict: Literal["a", "b", "tie"] | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _result_or_error(self) -> CompareResult:
        if (self.prob_a is not None and self.verdict is not None) == (self.error is not None):
            raise ValueError("a comparison carries either prob_a and verdict, or an error")
        return self


class CompareResponse(BaseModel):
    pairs: list[CompareResult]
    backend: str
    model: str
    is_language_model: bool
    rubric: str = Field(description="Version of the comparison prompt.")
    tie_margin: float = Field(description="|prob_a - 0.5| at or below this is a tie.")


class CurateItem(BaseModel):
    """One video window to curate: its first and last frame."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=256, description="Caller's id, echoed back.")
    first: str = Field(description="The window's first frame, base64.")
    last: str = Field(description="The window's last frame, base64.")


class CurateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[CurateItem] = Field(max_length=MAX_GROUPS)
    summary: bool = Field(default=True, description="Also ask for a one-sentence summary of the motion.")


class CategoryGuess(BaseModel):
    """The window's MotionEdit category: the most likely one and the distribution over all six, or an error."""

    category: str | None = Field(default=None, description="The most likely of MOTION_CATEGORIES.")
    probs: dict[str, float] | None = Field(default=None, description="Category -> probability, over all six.")
    error: str | None = Field(default=None, description="Why there is no category for this window.")

    @model_validator(mode="after")
    def _guess_or_error(self) -> CategoryGuess:
        has_guess = self.category is not None and self.probs is not None
        if has_guess == (self.error is not None):
            raise ValueError("a category guess carries either category and probs, or an error")
        if self.probs is not None and self.category not in self.probs:
            raise ValueError(f"category {self.category!r} is not among the probs' categories")
        return self


class MotionSummary(BaseModel):
    """A short sentence saying which subject moves and how, or an error."""

    text: str | None = Field(default=None, description="e.g. 'The woman turns her head toward the dog.'")
    error: str | None = Field(default=None, description="Why there is no summary for this window.")

    @model_validator(mode="after")
    def _text_or_error(self) -> MotionSummary:
        if (self.text is not None) == (self.error is not None):
            raise ValueError("a motion summary carries either text or an error")
        return self


class CurateResult(BaseModel):
    id: str | None = None
    criteria: dict[str, RubricScore] = Field(
        description="Criterion (CURATION_CRITERIA) -> score = raw = P(Yes) in [0, 1], levels = [P(Yes), P(No)]."
    )
    category: CategoryGuess
    summary: MotionSummary | None = Field(default=None, description="None when the request asked for no summary.")


class CurateResponse(BaseModel):
    items: list[CurateResult]
    rubrics: dict[str, str] = Field(description="Rubric name (e.g. curation/stable) -> version used.")
    backend: str
    model: str
    is_language_model: bool

"""Wire contract of the MLLM judge service (`POST /v1/judge/score`, `POST /v1/judge/compare`).

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

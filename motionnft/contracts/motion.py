"""Wire contract of the motion reward API (`POST /v1/motion/score`).

Field names here are the public contract: add fields, never rename these. Images travel as base64
text (PNG, JPEG or WebP); see `motionnft.contracts.images`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from motionnft.contracts.limits import MAX_EDITS, MAX_GROUPS

MOTION_SCORE_PATH = "/v1/motion/score"


class MotionGroup(BaseModel):
    """One prompt's group: the input image, the ground-truth target and K edits to score."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=256, description="Caller's id, echoed back.")
    source: str = Field(description="Input image I0, base64 PNG/JPEG/WebP.")
    target: str = Field(description="Ground-truth edited image Ig, base64.")
    edits: list[str] = Field(
        max_length=MAX_EDITS, description="Edited images Ie to score, base64, scored in this order."
    )


class MotionScoreRequest(BaseModel):
    """Score K edits per group against each group's target motion."""

    model_config = ConfigDict(extra="forbid")

    groups: list[MotionGroup] = Field(max_length=MAX_GROUPS, description="One or more groups.")


class MotionTerms(BaseModel):
    """The reward's terms (docs/method.md section 2), dimensionless, in normalised flow units."""

    vector: float = Field(description="D_vec: flow difference term.")
    direction: float = Field(description="D_dir: direction misalignment in [0, 1].")
    movement: float = Field(description="M_move: hinge against edits that barely move.")
    distance: float = Field(description="D: weighted sum of the three terms.")


class EditScore(BaseModel):
    """The motion alignment reward of one edit."""

    reward: float = Field(description="Six-level reward in {0, 0.2, ..., 1.0} (the training reward).")
    reward_continuous: float = Field(description="Continuous reward in [0, 1] before quantisation.")
    terms: MotionTerms
    mas: float = Field(
        description="Motion Alignment Score in [0, 100] (MotionEdit-Bench, docs/method.md section 6), same flows."
    )


class GroupScores(BaseModel):
    """One score per edit of a group, in request order."""

    id: str | None = None
    scores: list[EditScore]


class MotionScoreResponse(BaseModel):
    """Scores for every group, plus what produced them."""

    groups: list[GroupScores]
    flow_backend: str = Field(description="Optical-flow estimator that produced the flows.")
    reward_version: str = Field(description="Identifies the reward definition and its constants.")

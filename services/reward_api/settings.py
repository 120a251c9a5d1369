"""Reward API settings, from `REWARD_API_*` environment variables (e.g. `REWARD_API_FLOW_BACKEND=raft_large`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from motionnft.contracts.images import ImageLimits
from motionnft.contracts.limits import MAX_EDITS, MAX_GROUPS
from motionnft.scoring import DEFAULT_MAX_SIDE
from services.serving.settings import ServingSettings


class RewardApiSettings(ServingSettings):
    """Everything the motion reward service can be told; defaults run on a CPU with no weights."""

    model_config = SettingsConfigDict(env_prefix="REWARD_API_", extra="ignore", frozen=True)

    port: int = Field(default=8001, ge=0, le=65535)
    flow_backend: Literal["dis", "raft_large", "raft_small"] = Field(
        default="dis", description="Optical-flow estimator: OpenCV DIS (CPU, no weights) or torchvision RAFT."
    )
    dis_preset: Literal["ultrafast", "fast", "medium"] = Field(default="medium", description="DIS quality preset.")
    flow_threads: int = Field(default=2, gt=0, description="CPU threads the DIS backend may use.")
    raft_checkpoint: Path | None = Field(default=None, description="RAFT weights file; else torchvision's cache.")
    raft_allow_random_weights: bool = Field(default=False, description="Allow untrained RAFT (tests only).")
    device: str = Field(default="cpu", description="Torch device for flows and reward math, e.g. cuda:0.")
    flow_batch_size: int = Field(default=16, gt=0, description="Image pairs per estimator call.")
    cache_mb: float = Field(default=256.0, ge=0, description="Memory for cached target flows, MB (0 disables).")
    max_side: int = Field(
        default=DEFAULT_MAX_SIDE, ge=16, description="Long side the reward is computed at, px; larger images shrink."
    )
    max_batch: int = Field(default=64, gt=0, description="Edits coalesced into one scoring batch.")
    max_queue: int = Field(default=512, gt=0, description="Edits queued for scoring before 503.")
    max_groups: int = Field(default=16, gt=0, le=MAX_GROUPS, description="Groups per request.")
    max_edits_per_group: int = Field(default=32, gt=0, le=MAX_EDITS, description="Edits per group.")
    max_image_pixels: int = Field(default=4096 * 4096, gt=0, description="Largest decoded image, pixels.")
    min_image_side: int = Field(default=16, gt=0, description="Smallest image side, pixels.")
    max_image_side: int = Field(default=8192, gt=0, description="Largest image side, pixels.")

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(self.max_image_pixels, self.min_image_side, self.max_image_side)

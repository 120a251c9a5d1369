"""The miner's thresholds and sizes, one typed model; each default says why it is what it is.

Flow and image statistics are measured at ``analysis_side`` pixels on the long side, so the pixel
thresholds below mean the same thing for a 480p and a 4K video. Shares are fractions of the frame.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MiningSettings(BaseModel):
    """Everything `motionnft data mine` decides with (docs/mining.md lists them; `--set NAME=VALUE`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_s: float = Field(default=3.0, gt=0, description="Window length in seconds (the paper's 3 s).")
    probes: int = Field(
        default=5, ge=2, le=16,
        description="Frames read per window, both boundaries included: the cut test compares neighbours.",
    )  # fmt: skip
    analysis_side: int = Field(
        default=256, ge=64, le=1024,
        description="Long side of the frames the statistics see: DIS at 256 px costs ~4 ms a pair on one core.",
    )  # fmt: skip
    max_side: int = Field(default=1024, ge=64, description="Long side of the pair's images as written.")
    # Quality. Luma in [0, 1].
    min_luma: float = Field(default=0.08, ge=0, le=1, description="A frame darker than this is a fade or night.")
    max_luma: float = Field(default=0.92, ge=0, le=1, description="A frame brighter than this is washed out.")
    max_clipped: float = Field(
        default=0.4, ge=0, le=1, description="Share of pixels at 0-4 or 251-255 luma: more is lost detail."
    )
    min_sharpness: float = Field(
        default=30.0, ge=0,
        description="Variance of the luma Laplacian (0-255 scale) at analysis size: the corpus's photographs "
        "give 100-1600, the same frames under a Gaussian blur of sigma 3 px give 14.",
    )  # fmt: skip
    # Shot cut: Bhattacharyya distance of hue-saturation histograms between neighbouring probes.
    max_cut_distance: float = Field(
        default=0.45, ge=0, le=1,
        description="One step between probes changing the colour make-up this much is a cut: the corpus's "
        "moving subjects, pans and zooms stay below 0.2, a cut between two photographs gives 0.78.",
    )  # fmt: skip
    # Motion, from the flow first -> last frame split into a homography (camera) and a residual (subjects).
    max_camera_motion: float = Field(
        default=0.02, ge=0,
        description="The camera's path over the window (each step's mean homography displacement, summed) as "
        "a share of the diagonal: above 2 % the viewpoint is not stable (the paper's first criterion); "
        "a still camera measures under 0.1 %.",
    )  # fmt: skip
    moving_px: float = Field(
        default=1.0, gt=0, description="A pixel moves when its residual flow exceeds this (analysis pixels)."
    )
    min_moving_share: float = Field(
        default=0.01, ge=0, le=1, description="Less of the frame moving than this is no meaningful change."
    )
    max_moving_share: float = Field(
        default=0.5, ge=0, le=1,
        description="More than half the frame moving on its own is chaos, a cut the histograms missed, "
        "or camera motion the homography could not explain.",
    )  # fmt: skip
    # The judge: a window is kept when every criterion's P(Yes) reaches this.
    judge_threshold: float = Field(default=0.5, ge=0, le=1, description="P(Yes) each curation criterion needs.")

"""Flow pictures for the bench's HTML page, drawn locally: the reward API returns scores, not flows.

Images are uint8 RGB (H, W, 3); flows (2, H, W) in pixels, source to edit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
from PIL import Image

from motionnft.contracts.images import DecodedImage
from motionnft.data.records import EditSample
from motionnft.flow import FlowEstimator, build_flow_estimator
from motionnft.flow.pictures import flow_picture
from motionnft.scoring import GroupFlows, MotionScorer, ScoringGroup

THUMB_SIDE = 256
"""Long side of every thumbnail (and of every flow panel), pixels."""


class FlowPictures:
    """Draws flow pictures locally (the reward API returns scores, not flows) with one estimator.

    A MotionScorer does the work, for its batching and resizing: every image is shrunk to `max_side`
    pixels first, so a picture costs a thumbnail-sized flow, and one item's target flow is estimated
    once for all of its models' edits.
    """

    def __init__(self, estimator: FlowEstimator, max_side: int = THUMB_SIDE) -> None:
        # Each item's target flow is used by that item alone: a small cache is enough.
        self.scorer = MotionScorer(estimator, max_side=max_side, cache_bytes=16 * 2**20)
        self.max_side = max_side
        self.backend = estimator.name  # e.g. "opencv-dis-medium", written on the page

    @classmethod
    def cpu(cls, max_side: int = THUMB_SIDE) -> FlowPictures:
        """The project's CPU estimator (OpenCV DIS, no weights)."""
        return cls(build_flow_estimator("dis", "cpu"), max_side)

    def draw(self, sample: EditSample, edits: Mapping[str, np.ndarray]) -> dict[str, Image.Image]:
        """Per name of `edits` (uint8 (H, W, 3) each), a picture of its edit flow, the target flow and
        their difference on one colour scale (`motionnft.flow.pictures.flow_picture`)."""
        if not edits:
            return {}
        source, target = _decoded(sample.input_image), _decoded(sample.target_image)
        flows = self.scorer.compute_flows([ScoringGroup(source, target, [_decoded(p) for p in edits.values()])])[0]
        return {
            name: flow_picture(GroupFlows(target=[target_flow], edits=[edit_flow]), [name[:24]])
            for name, target_flow, edit_flow in zip(edits, flows.target, flows.edits, strict=True)
        }


def _decoded(pixels: np.ndarray) -> DecodedImage:
    """`pixels` as the scorer takes them; the digest (its target-flow cache key) hashes the pixels."""
    digest = hashlib.blake2b(repr(pixels.shape).encode() + np.ascontiguousarray(pixels).tobytes(), digest_size=16)
    return DecodedImage(pixels=pixels, digest=digest.hexdigest())

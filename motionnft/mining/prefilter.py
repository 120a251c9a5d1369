"""Cheap statistics of a window's frames and flow, and the prefilter decision they make. Pure: arrays in,
numbers out; nothing here reads a file or loads a model.

Conventions: frames are uint8 RGB (H, W, 3) at analysis size; a flow is float32 (2, H, W) in pixels,
first frame -> last frame (channel 0 = x, 1 = y), as everywhere in the project.

Reason codes, checked in this order (the first that fails is the window's reason; cheap and
unambiguous checks first, so a fade is called ``exposure``, not ``cut``):

- ``exposure``: a boundary frame is too dark, too bright, or mostly clipped (fades, flashes);
- ``blur``: a boundary frame has too little high-frequency detail;
- ``cut``: two neighbouring probes differ in colour make-up like two shots do;
- ``camera_motion``: the homography-like part of the flow moves the frame (pan, zoom, shake);
- ``no_motion``: too little of the frame moves once the camera is taken out;
- ``too_much_motion``: too much of it does (chaos, or a cut or camera move not explained above).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import cv2
import numpy as np

from motionnft.mining.settings import MiningSettings

PREFILTER_REASONS = ("exposure", "blur", "cut", "camera_motion", "no_motion", "too_much_motion")
_GRID_STEP = 8  # flow vectors sampled every 8 px for the homography fit: ~1000 points at 256 px


def luma(frame: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> uint8 (H, W) luma (BT.601)."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def exposure(frame: np.ndarray) -> tuple[float, float]:
    """(mean luma in [0, 1], share of pixels clipped at 0-4 or 251-255) of one frame."""
    y = luma(frame)
    clipped = np.count_nonzero((y <= 4) | (y >= 251)) / y.size
    return float(y.mean()) / 255.0, float(clipped)


def sharpness(frame: np.ndarray) -> float:
    """Variance of the Laplacian of the luma (0-255 scale): the usual focus measure; higher is sharper."""
    return float(cv2.Laplacian(luma(frame), cv2.CV_64F).var())


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance in [0, 1] of the hue-saturation histograms (30 x 32 bins) of two frames."""
    hists = []
    for frame in (a, b):
        hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [30, 32], [0, 180, 0, 256])
        hists.append(cv2.normalize(hist, hist).astype(np.float32))
    return float(cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_BHATTACHARYYA))


def cut_distance(probes: Sequence[np.ndarray]) -> float:
    """The largest colour distance between neighbouring probes of a window (a cut shows as one big step)."""
    return max(colour_distance(a, b) for a, b in pairwise(probes))


def split_flow(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(camera, residual) parts of a flow (2, H, W): a RANSAC homography fit to the flow, and what it leaves.

    The homography is what a camera that pans, tilts, zooms or rolls does to a distant scene; a subject
    that moves on its own is an outlier to it, as long as the background holds most of the frame.
    """
    _, height, width = flow.shape
    ys, xs = np.mgrid[0:height:_GRID_STEP, 0:width:_GRID_STEP]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    moved = points + flow[:, ys, xs].reshape(2, -1).T
    homography, _ = cv2.findHomography(points, moved, cv2.RANSAC, 1.0, maxIters=500, confidence=0.995)
    if homography is None:  # degenerate (e.g. a blank frame): call all of it residual
        return np.zeros_like(flow), flow
    grid = np.stack(np.meshgrid(np.arange(width), np.arange(height)), axis=-1).reshape(-1, 1, 2)
    mapped = cv2.perspectiveTransform(grid.astype(np.float32), homography).reshape(height, width, 2)
    camera = (mapped - grid.reshape(height, width, 2)).transpose(2, 0, 1).astype(np.float32)
    return camera, flow - camera


def motion_measures(step_flows: Sequence[np.ndarray], moving_px: float) -> dict[str, float]:
    """Camera and subject motion over a window, from the flows (2, H, W) between neighbouring probes.

    Neighbouring probes are a few pixels apart, where DIS is accurate; one flow from the first to the
    last frame would have to find displacements of tens of pixels. Returns

    - ``camera_motion``: the camera's path, the sum of each step's mean homography displacement, / diagonal;
    - ``moving_share``: the mean over steps of the share of pixels whose residual exceeds ``moving_px``;
    - ``moving_dx``, ``moving_dy``: the subject's travel in analysis pixels, the sum of each step's
      median residual over its moving pixels (0 for a step where nothing moves);
    - ``moving_magnitude``: the length of that travel / diagonal;
    - ``moving_cx``, ``moving_cy``: where the moving region starts (its centre in the first step that
      moves), in [0, 1] of width and height; 0.5 when nothing moves.
    """
    _, height, width = step_flows[0].shape
    diagonal = float(np.hypot(height, width))
    camera_path, shares, travel = 0.0, [], np.zeros(2)
    centre: tuple[float, float] | None = None
    for flow in step_flows:
        camera, residual = split_flow(flow)
        camera_path += float(np.hypot(camera[0], camera[1]).mean())
        moving = np.hypot(residual[0], residual[1]) > moving_px
        shares.append(float(moving.mean()))
        if moving.any():
            travel += (float(np.median(residual[0][moving])), float(np.median(residual[1][moving])))
            if centre is None:
                rows, cols = np.nonzero(moving)
                centre = (float(cols.mean()) / max(width - 1, 1), float(rows.mean()) / max(height - 1, 1))
    centre = centre or (0.5, 0.5)
    return {
        "camera_motion": camera_path / diagonal,
        "moving_share": float(np.mean(shares)),
        "moving_magnitude": float(np.hypot(*travel)) / diagonal,
        "moving_dx": float(travel[0]),
        "moving_dy": float(travel[1]),
        "moving_cx": centre[0],
        "moving_cy": centre[1],
    }


def frame_measures(first: np.ndarray, last: np.ndarray, probes: Sequence[np.ndarray]) -> dict[str, float]:
    """Exposure, sharpness and cut statistics of a window (boundary frames, and all probes in order)."""
    (luma_first, clipped_first), (luma_last, clipped_last) = exposure(first), exposure(last)
    return {
        "luma_min": min(luma_first, luma_last),
        "luma_max": max(luma_first, luma_last),
        "clipped": max(clipped_first, clipped_last),
        "sharpness": min(sharpness(first), sharpness(last)),
        "cut_distance": cut_distance(probes),
    }


def prefilter_reason(measures: dict[str, float], settings: MiningSettings) -> str | None:
    """The first failed check's reason code (module docstring order), or None when the window passes."""
    s = settings
    if measures["luma_min"] < s.min_luma or measures["luma_max"] > s.max_luma or measures["clipped"] > s.max_clipped:
        return "exposure"
    if measures["sharpness"] < s.min_sharpness:
        return "blur"
    if measures["cut_distance"] > s.max_cut_distance:
        return "cut"
    if "camera_motion" not in measures:
        return None  # frame checks only (the flow is measured after them)
    if measures["camera_motion"] > s.max_camera_motion:
        return "camera_motion"
    if measures["moving_share"] < s.min_moving_share:
        return "no_motion"
    if measures["moving_share"] > s.max_moving_share:
        return "too_much_motion"
    return None

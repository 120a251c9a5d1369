"""Image pairs with known optical flow, built from real photographs, for testing flow estimators.

Any test that needs a flow ground truth may import this module.

Conventions (as in ``motionnft.flow``): images are uint8 ``(H, W, 3)`` RGB; a flow is float32
``(2, H, W)`` in pixels from source to target, channel 0 = x (columns), 1 = y (rows); a point at
(x, y) in the source appears at (x + u, y + v) in the target.

Warping direction. A target is made by *backward* warping: for every target pixel y we find the
source point b(y) that lands on it, b(y) + f(b(y)) = y, and sample target(y) = source(b(y)) with
``cv2.remap``. Then target(p + f(p)) = source(p) for every source pixel p, so f (evaluated on the
source grid) is exactly the source-to-target flow. For a constant f, b(y) = y - f; for a smooth field
b is found by the fixed-point iteration b <- y - f(b), a contraction while |grad f| < 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
from skimage import data as skimage_data

Photo = Literal["astronaut", "coffee"]
FlowField = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(x, y) float32 arrays of points -> (u, v) float32 displacements at those points, in pixels."""


@dataclass(frozen=True)
class KnownMotion:
    """A source image, its target, the true source->target flow and where to judge an estimate.

    Attributes:
        source: uint8 ``(H, W, 3)`` RGB.
        target: uint8 ``(H, W, 3)`` RGB.
        flow: float32 ``(2, H, W)`` pixels, source -> target.
        valid: bool ``(H, W)``: pixels where the flow is observable (away from the borders).
    """

    source: np.ndarray
    target: np.ndarray
    flow: np.ndarray
    valid: np.ndarray


def photograph(name: Photo = "astronaut", size: int = 256) -> np.ndarray:
    """A photograph shipped inside scikit-image: the central square, resized to uint8 ``(size, size, 3)``."""
    image = skimage_data.astronaut() if name == "astronaut" else skimage_data.coffee()
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(image[top : top + side, left : left + side])
    interpolation = cv2.INTER_AREA if size < side else cv2.INTER_CUBIC
    return cv2.resize(square, (size, size), interpolation=interpolation)


def central_mask(height: int, width: int, margin: int) -> np.ndarray:
    """Bool ``(H, W)``: True except within ``margin`` pixels of the border."""
    mask = np.zeros((height, width), dtype=bool)
    mask[margin : height - margin, margin : width - margin] = True
    return mask


def translation(dx: float, dy: float, size: int = 256, photo: Photo = "astronaut", margin: int = 16) -> KnownMotion:
    """The whole picture moves by ``(dx, dy)`` pixels (integer or sub-pixel).

    Both images are crops of one larger photograph, so the target's borders hold real picture content
    rather than padding; sub-pixel shifts are resampled with bicubic interpolation.
    """
    pad = math.ceil(max(abs(dx), abs(dy))) + 4
    big = photograph(photo, size + 2 * pad)
    target_big = backward_warp(big, lambda x, y: (np.full_like(x, dx), np.full_like(y, dy)))
    window = (slice(pad, pad + size), slice(pad, pad + size))
    flow = np.stack([np.full((size, size), dx), np.full((size, size), dy)]).astype(np.float32)
    return KnownMotion(big[window].copy(), target_big[window].copy(), flow, central_mask(size, size, margin))


def gaussian_bump(
    amplitude: tuple[float, float] = (4.0, -3.0),
    sigma_fraction: float = 0.15,
    size: int = 256,
    photo: Photo = "coffee",
    margin: int = 16,
) -> KnownMotion:
    """A smooth local warp: the middle of the picture moves by ``amplitude = (u, v)`` pixels, fading
    out as a Gaussian of standard deviation ``sigma_fraction * size`` pixels around the centre."""
    source = photograph(photo, size)
    center = (size - 1) / 2.0
    sigma = sigma_fraction * size

    def bump(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weight = np.exp(-((x - center) ** 2 + (y - center) ** 2) / (2.0 * sigma**2)).astype(np.float32)
        return amplitude[0] * weight, amplitude[1] * weight

    xs, ys = pixel_grid(size, size)
    flow = np.stack(bump(xs, ys)).astype(np.float32)
    target = backward_warp(source, bump)
    return KnownMotion(source, target, flow, central_mask(size, size, margin))


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(H, W)`` x and y coordinates of every pixel centre."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return xs, ys


def backward_warp(source: np.ndarray, field: FlowField, iterations: int = 30) -> np.ndarray:
    """The target that ``field`` (source -> target flow) turns ``source`` into (module docstring).

    Raises:
        AssertionError: the fixed-point inversion did not converge (the field is not smooth enough).
    """
    xs, ys = pixel_grid(*source.shape[:2])
    back_x, back_y = xs.copy(), ys.copy()
    for _ in range(iterations):
        u, v = field(back_x, back_y)
        back_x, back_y = xs - u, ys - v
    u, v = field(back_x, back_y)
    residual = np.abs(back_x + u - xs).max() + np.abs(back_y + v - ys).max()
    assert residual < 1e-3, f"flow field inversion did not converge (residual {residual} px)"
    return cv2.remap(source, back_x, back_y, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def as_batches(motions: Sequence[KnownMotion]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack motions into uint8 ``(B, H, W, 3)`` sources and targets and float32 ``(B, 2, H, W)`` flows."""
    return (
        np.stack([motion.source for motion in motions]),
        np.stack([motion.target for motion in motions]),
        np.stack([motion.flow for motion in motions]),
    )


def end_point_error(estimate: np.ndarray | torch.Tensor, truth: np.ndarray, valid: np.ndarray) -> float:
    """Mean end-point error in pixels: the mean over ``valid`` of |estimate - truth| (Euclidean).

    Args:
        estimate: ``(2, H, W)`` or ``(1, 2, H, W)`` flow, numpy or torch on any device.
        truth: ``(2, H, W)`` flow.
        valid: bool ``(H, W)``.
    """
    if isinstance(estimate, torch.Tensor):
        estimate = estimate.detach().float().cpu().numpy()
    estimate = estimate.reshape(truth.shape)
    error = np.sqrt(((estimate - truth) ** 2).sum(axis=0))
    return float(error[valid].mean())

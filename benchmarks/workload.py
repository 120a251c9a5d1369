"""Benchmark workloads: groups of encoded images (1 source, 1 target, K edits) with real motion.

Each group is a different crop of a real photograph (shipped with scikit-image) with its own smooth
local warp, so no two groups share a target flow: a scorer's cache starts cold for every group.
Edits are the target warp at several strengths plus JPEG copies, like a policy's K samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage import data as skimage_data

from motionnft.contracts.images import encode_image_bytes

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "motorcycle_left")


@dataclass(frozen=True)
class EncodedGroup:
    """PNG/JPEG bytes of one group, as a client would send them."""

    source: bytes
    target: bytes
    edits: list[bytes]


def _photo(index: int, size: int, rng: np.random.Generator) -> np.ndarray:
    name = PHOTOS[index % len(PHOTOS)]
    try:
        image = getattr(skimage_data, name)()
    except Exception:  # a photo that needs a download: fall back to one that ships with the package
        image = skimage_data.astronaut()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    side = min(image.shape[:2])
    crop = int(side * rng.uniform(0.6, 1.0))
    top = rng.integers(0, image.shape[0] - crop + 1)
    left = rng.integers(0, image.shape[1] - crop + 1)
    return cv2.resize(np.ascontiguousarray(image[top : top + crop, left : left + crop]), (size, size))


def _warp(image: np.ndarray, amplitude: tuple[float, float], center: tuple[float, float], sigma: float) -> np.ndarray:
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    weight = np.exp(-((xs - center[0]) ** 2 + (ys - center[1]) ** 2) / (2 * sigma**2)).astype(np.float32)
    # Backward sampling with the field at the target point: close to the exact inverse for small motion.
    return cv2.remap(image, xs - amplitude[0] * weight, ys - amplitude[1] * weight, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)  # fmt: skip


def make_groups(count: int, size: int, edits: int = 8, seed: int = 0) -> list[EncodedGroup]:
    """`count` distinct groups of `edits` edits at size x size pixels."""
    rng = np.random.default_rng(seed)
    groups = []
    for index in range(count):
        source = _photo(index, size, rng)
        amplitude = (float(rng.uniform(-0.05, 0.05) * size), float(rng.uniform(-0.05, 0.05) * size))
        center = (float(rng.uniform(0.3, 0.7) * size), float(rng.uniform(0.3, 0.7) * size))
        sigma = float(rng.uniform(0.1, 0.25) * size)
        target = _warp(source, amplitude, center, sigma)
        group_edits = []
        for k in range(edits):
            strength = float(rng.uniform(-1.0, 1.5))
            edited = _warp(source, (amplitude[0] * strength, amplitude[1] * strength), center, sigma)
            group_edits.append(encode_image_bytes(edited, "JPEG" if k % 2 else "PNG", quality=90))
        groups.append(EncodedGroup(encode_image_bytes(source), encode_image_bytes(target), group_edits))
    return groups

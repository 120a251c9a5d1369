"""Shrinking images to the size a score is computed at: area interpolation, aspect ratio kept.

Images are uint8 (H, W, 3) or (H, W); sizes are (H, W) in pixels.
"""

from __future__ import annotations

import cv2
import numpy as np


def fit_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(H, W) scaled so the long side is at most `max_side` (unchanged when it already fits)."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_area(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`pixels` at (H, W) = `size` with area interpolation; the array itself when already that size."""
    if pixels.shape[:2] == size:
        return pixels
    return cv2.resize(pixels, (size[1], size[0]), interpolation=cv2.INTER_AREA)  # cv2 wants (W, H)


def shrink_to_fit(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """`pixels` shrunk so the long side is at most `max_side`; the array itself when it fits."""
    return resize_area(pixels, fit_size(pixels.shape[0], pixels.shape[1], max_side))

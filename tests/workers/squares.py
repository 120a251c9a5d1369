"""A stand-in for the synthetic MotionEdit generator: a textured square on a plain background moves.

`moving_squares(n, seed, size)` -> [(input uint8 (size, size, 3), target uint8 (size, size, 3), prompt)].
"""

from __future__ import annotations

import numpy as np

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}


def _draw(size: int, background: np.ndarray, color: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = background
    rows, cols = np.mgrid[0:side, 0:side]
    stripes = ((rows + cols) // 4 % 2)[..., None].astype(np.float32)  # diagonal stripes: a visible texture
    image[top : top + side, left : left + side] = color * (0.6 + 0.4 * stripes)
    return image.round().clip(0, 255).astype(np.uint8)


def moving_squares(n: int, seed: int, size: int = 64) -> list[tuple[np.ndarray, np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        name = str(rng.choice(list(COLORS)))
        direction = str(rng.choice(list(DIRECTIONS)))
        side = int(rng.integers(size // 5, size // 3))
        shift = int(rng.integers(size // 8, size // 4))
        lo, hi = shift, size - side - shift
        top, left = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
        background = rng.uniform(20, 120, size=3).astype(np.float32)
        color = np.asarray(COLORS[name], dtype=np.float32)
        d_row, d_col = DIRECTIONS[direction]
        source = _draw(size, background, color, top, left, side)
        target = _draw(size, background, color, top + d_row * shift, left + d_col * shift, side)
        pairs.append((source, target, f"move the {name} square {direction}"))
    return pairs

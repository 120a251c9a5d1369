"""Textured shapes on a textured background, rendered under known affine motions with exact flow.

Conventions: images are uint8 RGB ``(H, W, 3)``; coordinates are pixels, x to the right (columns), y
down (rows), pixel centres at integers. A flow is float32 ``(2, H, W)`` in pixels from input to target
(channel 0 = x, 1 = y): a point at (x, y) in the input appears at (x + u, y + v) in the target.

How the flow is exact. A shape is a mask and a texture (``sprite``) in its own *local* frame; a
``Pose`` places it in the image, ``q = centre + matrix @ l`` for a local point l. Rendering evaluates,
for every image pixel q, the local point ``l = matrix^-1 (q - centre)``, then the mask and the sprite
there. A pair is the same shape under two poses, so an input pixel p of the shape moves to
``T(p) = c1 + M1 M0^-1 (p - c0)`` and its flow is ``T(p) - p``, exact by construction; the background
never moves (flow 0) and shows through wherever a shape left. Centres are integers and input matrices
are multiples of 90 degrees, so the input samples its sprites at integer points (no interpolation);
under an integer translation the target samples the very same points, so ``target[p + f] == input[p]``
bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114])
"""RGB -> gray weights, as OpenCV's RGB2GRAY (what DIS sees)."""
SHAPE_KINDS = ("square", "circle", "triangle", "arrow")
TEXTURES = ("stripes", "checks", "noise")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 45, 45),
    "green": (40, 170, 70),
    "blue": (50, 90, 220),
    "yellow": (235, 200, 40),
    "purple": (150, 65, 200),
    "orange": (240, 130, 30),
}


@dataclass(frozen=True, eq=False)
class Shape:
    """A shape in its local frame: it lies within ``radius`` pixels of the local origin.

    ``sprite`` is float32 ``(L, L, 3)`` RGB in 0-255, one pixel per local unit, the local origin at
    ``((L - 1) / 2, (L - 1) / 2)``; ``kind`` is in SHAPE_KINDS, ``colour`` in COLOURS, ``texture`` in TEXTURES.
    """

    kind: str
    colour: str
    texture: str
    radius: float
    sprite: np.ndarray

    @property
    def name(self) -> str:
        """How a prompt calls it, e.g. ``"red square"``."""
        return f"{self.colour} {self.kind}"


@dataclass(frozen=True, eq=False)
class Pose:
    """Where a shape is: ``centre`` (x, y) in pixels and ``matrix`` (2, 2), local -> image (rotation, scale, flip)."""

    centre: tuple[float, float]
    matrix: np.ndarray

    def extent(self, shape: Shape) -> float:
        """Radius in pixels of a circle around ``centre`` that holds the placed shape."""
        return shape.radius * float(np.linalg.norm(self.matrix, 2))

    def moved(self, dx: float = 0.0, dy: float = 0.0, linear: np.ndarray | None = None) -> Pose:
        """This pose translated by (dx, dy), its matrix first left-multiplied by ``linear`` (about its centre)."""
        matrix = self.matrix if linear is None else linear @ self.matrix
        return Pose((self.centre[0] + dx, self.centre[1] + dy), matrix)


def rotation(degrees: float) -> np.ndarray:
    """(2, 2) rotation; positive turns clockwise on screen (y points down). Exact at multiples of 90."""
    radians = np.deg2rad(degrees)
    matrix = np.array([[np.cos(radians), -np.sin(radians)], [np.sin(radians), np.cos(radians)]])
    return np.where(np.abs(matrix) < 1e-12, 0.0, matrix)


def make_shape(rng: np.random.Generator, kind: str, colour: str, radius: float, scale: float) -> Shape:
    """A shape of ``radius`` px with a random texture; ``scale`` (= image size / 64) sizes the pattern."""
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    side = 2 * int(np.ceil(radius)) + 5
    pattern = _pattern(rng, texture, side, scale)
    # The named pattern is mixed with smooth blotches and a little grain, at a modest 40 % of the
    # colour's brightness. Measured with OpenCV DIS at 64 px (the project's CPU flow): a strong periodic
    # pattern lets the flow lock onto the wrong period (a 10 px move of 5 px stripes looks like none) and
    # high-contrast detail traps it in local minima; smooth, moderate texture is tracked reliably.
    blotches = smooth_noise(rng, side, side, cells=max(3, round(side / (7.0 * scale))))
    pattern = 0.5 * pattern + 0.4 * blotches + 0.1 * rng.random((side, side))
    shade = 0.6 + 0.4 * pattern
    sprite = shade[..., None] * np.asarray(COLOURS[colour], dtype=np.float64)
    return Shape(kind, colour, texture, radius, sprite.astype(np.float32))


def _pattern(rng: np.random.Generator, texture: str, side: int, scale: float) -> np.ndarray:
    """float64 ``(side, side)`` in [0, 1] in the sprite's frame."""
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64)
    angle = rng.uniform(0.0, np.pi)
    along = xs * np.cos(angle) + ys * np.sin(angle)
    across = -xs * np.sin(angle) + ys * np.cos(angle)
    if texture == "stripes":
        period = rng.uniform(4.5, 7.0) * scale
        return 0.5 + 0.5 * np.sin(2.0 * np.pi * along / period)
    if texture == "checks":
        cell = rng.uniform(3.0, 5.0) * scale
        return ((np.floor(along / cell) + np.floor(across / cell)) % 2.0).astype(np.float64)
    return smooth_noise(rng, side, side, cells=max(3, round(side / (4.0 * scale))))


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """float64 ``(height, width)`` in [0, 1]: a ``cells x cells`` random grid, bicubically upsampled."""
    grid = rng.random((cells, cells)).astype(np.float32)
    noise = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    low, high = noise.min(), noise.max()
    return (noise - low) / max(high - low, 1e-6)


def make_background(rng: np.random.Generator, size: int, shapes: Sequence[Shape] = ()) -> np.ndarray:
    """float32 ``(size, size, 3)`` in 0-255: a muted tint, smooth noise and faint grain; it never moves.

    Low contrast on purpose (a busy background pulls flow estimators off the shapes, see make_shape),
    and of a brightness far from the shapes' in gray, because gray is all DIS sees: an orange square
    on a background of its own luminance is invisible to it.
    """
    level = background_level(shapes)
    tint = level + rng.uniform(-20.0, 20.0, size=3)  # low saturation, so the saturated shapes stand out
    texture = 0.6 * smooth_noise(rng, size, size, 4) + 0.4 * smooth_noise(rng, size, size, 9)
    shade = 0.8 + 0.2 * texture + rng.uniform(-0.03, 0.03, size=(size, size))
    return (shade[..., None] * tint / 0.9).clip(0.0, 255.0).astype(np.float32)


def background_level(shapes: Sequence[Shape]) -> float:
    """Mean background brightness (0-255) in 80-180 farthest in gray from every shape's mean."""
    candidates = np.linspace(80.0, 180.0, 21)
    if not shapes:
        return 150.0
    grays = [float((shape.sprite.reshape(-1, 3) @ GRAY_WEIGHTS).mean()) for shape in shapes]
    distance = np.min(np.abs(candidates[:, None] - np.asarray(grays)[None, :]), axis=1)
    return float(candidates[int(np.argmax(distance))])


def local_coords(pose: Pose, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(H, W)`` local x and y of every image pixel under ``pose``."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    inverse = np.linalg.inv(pose.matrix)
    dx, dy = xs - pose.centre[0], ys - pose.centre[1]
    local_x = inverse[0, 0] * dx + inverse[0, 1] * dy
    local_y = inverse[1, 0] * dx + inverse[1, 1] * dy
    return local_x.astype(np.float32), local_y.astype(np.float32)


def shape_mask(shape: Shape, local_x: np.ndarray, local_y: np.ndarray) -> np.ndarray:
    """bool, True where the local points lie inside the shape (hard edges: flow stays exact there)."""
    r, x, y = shape.radius, local_x, local_y
    if shape.kind == "circle":
        return x * x + y * y <= (0.92 * r) ** 2
    if shape.kind == "square":
        return np.maximum(np.abs(x), np.abs(y)) <= 0.7 * r
    if shape.kind == "triangle":  # equilateral, apex towards local +x, circumradius r
        inside = np.ones(x.shape, dtype=bool)
        for normal in (180.0, 60.0, -60.0):
            angle = np.deg2rad(normal)
            inside &= x * np.cos(angle) + y * np.sin(angle) <= 0.5 * r
        return inside
    if shape.kind == "arrow":  # pointing towards local +x
        shaft = (x >= -0.9 * r) & (x <= 0.05 * r) & (np.abs(y) <= 0.26 * r)
        head = (x >= 0.0) & (np.abs(y) <= 0.62 * (0.92 * r - x))
        return shaft | head
    raise ValueError(f"unknown shape kind {shape.kind!r}; choose one of {SHAPE_KINDS}")


def placed_mask(shape: Shape, pose: Pose, height: int, width: int) -> np.ndarray:
    """bool ``(H, W)``: the pixels the placed shape covers."""
    return shape_mask(shape, *local_coords(pose, height, width))


def render(background: np.ndarray, placed: Sequence[tuple[Shape, Pose]]) -> tuple[np.ndarray, np.ndarray]:
    """Draw shapes (later ones on top) over ``background`` float32 ``(H, W, 3)``.

    Returns:
        uint8 ``(H, W, 3)`` image and int16 ``(H, W)`` labels: the index of the shape each pixel
        shows, -1 on the background.
    """
    height, width = background.shape[:2]
    image = background.copy()
    labels = np.full((height, width), -1, dtype=np.int16)
    for index, (shape, pose) in enumerate(placed):
        local_x, local_y = local_coords(pose, height, width)
        mask = shape_mask(shape, local_x, local_y)
        half = (shape.sprite.shape[0] - 1) / 2.0
        colour = cv2.remap(
            shape.sprite, local_x + half, local_y + half, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        image[mask] = colour[mask]
        labels[mask] = index
    return np.rint(image).clip(0, 255).astype(np.uint8), labels


def true_flow(labels: np.ndarray, before: Sequence[Pose], after: Sequence[Pose]) -> np.ndarray:
    """float32 ``(2, H, W)``: T(p) - p on each input pixel of shape i (``labels == i``), 0 elsewhere."""
    height, width = labels.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    flow = np.zeros((2, height, width), dtype=np.float64)
    for index, (start, end) in enumerate(zip(before, after, strict=True)):
        mask = labels == index
        linear = end.matrix @ np.linalg.inv(start.matrix)
        dx, dy = xs[mask] - start.centre[0], ys[mask] - start.centre[1]
        flow[0][mask] = end.centre[0] + linear[0, 0] * dx + linear[0, 1] * dy - xs[mask]
        flow[1][mask] = end.centre[1] + linear[1, 0] * dx + linear[1, 1] * dy - ys[mask]
    return flow.astype(np.float32)

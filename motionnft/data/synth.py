"""A synthetic MotionEdit-style dataset whose true optical flow is known exactly.

Each pair shows one or two textured shapes (square, circle, triangle, arrow; a colour and a texture
each: stripes, checks or smooth noise, plus grain) on a muted textured background, before and after
an instructed motion. The six MotionEdit categories have shape analogues (``CATEGORIES``):

- ``pose``: a shape rotates 35-60 degrees about its centre ("Rotate the blue triangle clockwise").
- ``locomotion``: a shape moves 4-10 px in one direction ("Move the red square to the right").
- ``object_state``: a shape grows (x1.35-1.6) or shrinks (x0.5-0.65) ("Make the green circle grow").
- ``orientation``: an arrow or triangle flips or turns 90 degrees ("Flip the yellow arrow to face left").
- ``subject_object``: a shape moves 4-10 px until it touches another ("Move the red square until it
  touches the blue circle"): it stops at the last whole pixel that keeps them apart.
- ``inter_subject``: two shapes move 3-6 px each toward or away from each other ("Move the two shapes
  toward each other").

Distances are at 64 px and scale with ``size / 64``; translations are whole pixels. They stop at
10 px because OpenCV DIS, the project's CPU flow, loses larger moves at 64 px (its pyramid is shallow
at that size). Measured on 360 locomotion pairs (3 seeds): the mean cosine between DIS (medium) and
the true flow on moving pixels is 0.97-1.0 for 4-8 px moves, 0.9 for 9-10 px, 0.7 for 11-12 px.

Categories go round-robin (pair i is ``CATEGORIES[i % 6]``). Shapes stay inside the frame, never
overlap, and keep a pixel of background between them (but for the touch of ``subject_object``), in
both images, so every shape pixel of the input is visible in the target. Pair i depends only on
(seed, i, size): ``generate(200, s)`` starts with ``generate(100, s)``. Rendering and the exact flow:
``motionnft.data.scenes``. Writing, splitting, reading back: ``motionnft.data.synth_io`` (re-exported
here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from motionnft.contracts.judge import MOTION_CATEGORIES
from motionnft.data.scenes import (
    COLOURS,
    SHAPE_KINDS,
    Pose,
    Shape,
    make_background,
    make_shape,
    placed_mask,
    render,
    rotation,
    true_flow,
)
from motionnft.data.synth_io import load_true_flow, split, write_dataset

__all__ = ["CATEGORIES", "SynthPair", "generate", "generate_pair", "load_true_flow", "split", "write_dataset"]

CATEGORIES = MOTION_CATEGORIES  # the wire contract's tuple: one list of categories in the whole project
MIN_SIZE = 32
_MAX_TRIES = 500
_NEIGHBOURS = np.ones((3, 3), dtype=np.uint8)
_DIRECTIONS = {"to the right": (1, 0), "to the left": (-1, 0), "down": (0, 1), "up": (0, -1)}
_FACING = {(1, 0): "right", (-1, 0): "left", (0, 1): "down", (0, -1): "up"}

Motion = tuple[Shape, Pose, Pose]
"""A shape, its pose in the input and its pose in the target."""


@dataclass(frozen=True, eq=False)
class SynthPair:
    """One synthetic triplet and its ground truth.

    Attributes:
        id: ``"synth-s{seed}-{index:05d}"``.
        prompt: the imperative instruction.
        category: one of ``CATEGORIES``.
        input_image, target_image: uint8 RGB ``(size, size, 3)``.
        flow: float32 ``(2, size, size)``, the true input -> target displacement in pixels (channel 0 =
            x, 1 = y); zero on the background and on shapes that do not move.
        shape_mask: bool ``(size, size)``, the input pixels covered by a shape.
    """

    id: str
    prompt: str
    category: str
    input_image: np.ndarray
    target_image: np.ndarray
    flow: np.ndarray
    shape_mask: np.ndarray


def generate(n: int, seed: int, size: int = 64) -> list[SynthPair]:
    """``n`` pairs, categories round-robin, deterministic in (n, seed, size). About 1 ms a pair at 64 px."""
    if n < 0 or seed < 0:
        raise ValueError(f"n and seed must be non-negative, got n={n}, seed={seed}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} pixels, got {size}")
    return [generate_pair(seed, index, size) for index in range(n)]


def generate_pair(seed: int, index: int, size: int = 64, motion: float = 1.0) -> SynthPair:
    """Pair ``index`` of the dataset ``seed`` (its own random stream, so pairs are independent).

    ``motion`` scales every shape's motion (``partial_pose``): 1 is the dataset's pair, 0.5 a target
    half-way, 0 no motion, -1 the opposite motion; the same input and scene in every case (the
    known-quality edits of the bench's ranking checks). ``flow`` stays the true flow of motion 1.
    """
    rng = np.random.default_rng([seed, index])
    category = CATEGORIES[index % len(CATEGORIES)]
    scale = size / 64.0
    for _ in range(_MAX_TRIES):
        motions, prompt = _PROGRAMS[category](rng, scale)
        if _fits(motions, size, touch_at_end=category == "subject_object"):
            break
    else:  # not met in practice: each program succeeds with probability well above 1 %
        raise RuntimeError(f"could not place a {category} scene at {size} px in {_MAX_TRIES} tries")
    background = make_background(rng, size, [shape for shape, _, _ in motions])
    input_image, labels = render(background, [(shape, start) for shape, start, _ in motions])
    ends = [end if motion == 1.0 else partial_pose(start, end, motion) for _, start, end in motions]
    target_image, _ = render(background, [(shape, end) for (shape, _, _), end in zip(motions, ends, strict=True)])
    flow = true_flow(labels, [start for _, start, _ in motions], [end for _, _, end in motions])
    return SynthPair(f"synth-s{seed}-{index:05d}", prompt, category, input_image, target_image, flow, labels >= 0)


def partial_pose(start: Pose, end: Pose, fraction: float) -> Pose:
    """The pose ``fraction`` of the way from ``start`` to ``end``: the translation scaled, the turn
    (relative rotation and scale) raised to ``fraction``; a mirror, which has no fractional power,
    happens at ``fraction`` >= 1 and is undone (inverted) below 0."""
    dx, dy = end.centre[0] - start.centre[0], end.centre[1] - start.centre[1]
    relative = end.matrix @ np.linalg.inv(start.matrix)
    if np.linalg.det(relative) > 0:
        angle = np.degrees(np.arctan2(relative[1, 0], relative[0, 0]))
        linear = rotation(fraction * angle) * np.sqrt(np.linalg.det(relative)) ** fraction
    else:
        linear = relative if fraction >= 1 else np.linalg.inv(relative) if fraction < 0 else np.eye(2)
    return start.moved(fraction * dx, fraction * dy, linear)


def _fits(motions: list[Motion], size: int, touch_at_end: bool = False, margin: float = 1.0) -> bool:
    """Every shape inside the frame in both images, and the shapes apart: at least one background pixel
    between them (8-neighbourhood) in both images, except that they may touch at the end when asked."""
    for shape, *poses in motions:
        for pose in poses:
            reach = pose.extent(shape) + margin
            if min(pose.centre) < reach or max(pose.centre) > size - 1 - reach:
                return False
    for frame in (0, 1):
        clearance = not (touch_at_end and frame == 1)
        covered = np.zeros((size, size), dtype=bool)
        for shape, start, end in motions:
            mask = placed_mask(shape, (start, end)[frame], size, size)
            if np.any(covered & mask):
                return False
            # Grow what is drawn by a pixel, so the next shape may not even touch it diagonally.
            covered |= cv2.dilate(mask.view(np.uint8), _NEIGHBOURS).view(bool) if clearance else mask
    return True


def _shapes(
    rng: np.random.Generator, scale: float, count: int, kinds: tuple[str, ...] = SHAPE_KINDS, but: str = ""
) -> list[Shape]:
    """``count`` shapes of distinct colours other than ``but`` (so a prompt can name each); radius 9-12.5 px
    at 64 px."""
    colours = rng.choice([c for c in COLOURS if c != but], size=count, replace=False)
    return [
        make_shape(rng, str(rng.choice(kinds)), str(colour), rng.uniform(9.0, 12.5) * scale, scale)
        for colour in colours
    ]


def _pose(rng: np.random.Generator, scale: float, right_angles: bool = True) -> Pose:
    """A random integer centre in a 64*scale frame; a random multiple of 90 degrees (exact sprite sampling)."""
    low, high = round(12 * scale), round(52 * scale)
    centre = (float(rng.integers(low, high + 1)), float(rng.integers(low, high + 1)))
    turns = int(rng.integers(4)) if right_angles else 0
    return Pose(centre, rotation(90.0 * turns))


def _steps(rng: np.random.Generator, scale: float, low: float, high: float) -> int:
    """A whole number of pixels in [low, high] * scale."""
    return int(rng.integers(round(low * scale), round(high * scale) + 1))


def _with_bystander(rng: np.random.Generator, scale: float, mover: Motion) -> list[Motion]:
    """Half the time add a second shape that stays put, so not everything in a scene moves."""
    if rng.random() < 0.5:
        return [mover]
    (other,) = _shapes(rng, scale, 1, but=mover[0].colour)
    pose = _pose(rng, scale)
    return [mover, (other, pose, pose)]


def _pose_program(rng: np.random.Generator, scale: float) -> tuple[list[Motion], str]:
    (shape,) = _shapes(rng, scale, 1, kinds=("square", "triangle", "arrow"))  # a circle's turn barely shows
    start = _pose(rng, scale)
    clockwise = bool(rng.random() < 0.5)
    angle = rng.uniform(35.0, 60.0) * (1.0 if clockwise else -1.0)
    mover = (shape, start, start.moved(linear=rotation(angle)))
    way = "clockwise" if clockwise else "counterclockwise"
    return _with_bystander(rng, scale, mover), f"Rotate the {shape.name} {way}"


def _locomotion_program(rng: np.random.Generator, scale: float) -> tuple[list[Motion], str]:
    (shape,) = _shapes(rng, scale, 1)
    words = str(rng.choice(list(_DIRECTIONS)))
    (ux, uy), distance = _DIRECTIONS[words], _steps(rng, scale, 4, 10)
    start = _pose(rng, scale)
    mover = (shape, start, start.moved(ux * distance, uy * distance))
    return _with_bystander(rng, scale, mover), f"Move the {shape.name} {words}"


def _object_state_program(rng: np.random.Generator, scale: float) -> tuple[list[Motion], str]:
    (shape,) = _shapes(rng, scale, 1)
    grow = bool(rng.random() < 0.5)
    factor = rng.uniform(1.35, 1.6) if grow else rng.uniform(0.5, 0.65)
    start = _pose(rng, scale)
    mover = (shape, start, start.moved(linear=factor * np.eye(2)))
    return _with_bystander(rng, scale, mover), f"Make the {shape.name} {'grow' if grow else 'shrink'}"


def _orientation_program(rng: np.random.Generator, scale: float) -> tuple[list[Motion], str]:
    (shape,) = _shapes(rng, scale, 1, kinds=("arrow", "triangle"))
    start = _pose(rng, scale)
    facing = tuple(int(v) for v in start.matrix[:, 0])  # where local +x (the tip) points
    if rng.random() < 0.5:  # flip across the axis perpendicular to where it faces
        end = start.moved(linear=np.diag([-1.0, 1.0]) if facing[1] == 0 else np.diag([1.0, -1.0]))
        verb = "Flip"
    else:
        end = start.moved(linear=rotation(90.0 if rng.random() < 0.5 else -90.0))
        verb = "Turn"
    new_facing = _FACING[(int(end.matrix[0, 0]), int(end.matrix[1, 0]))]
    return _with_bystander(rng, scale, (shape, start, end)), f"{verb} the {shape.name} to face {new_facing}"


def _pair_on_axis(rng: np.random.Generator, scale: float) -> tuple[Shape, Shape, Pose, Pose, np.ndarray, int]:
    """Two shapes with a on the -axis side of b, and the centre distance at which they touch."""
    a, b = _shapes(rng, scale, 2)
    axis = np.array([1.0, 0.0]) if rng.random() < 0.5 else np.array([0.0, 1.0])
    axis = axis if rng.random() < 0.5 else -axis
    pose_b = _pose(rng, scale)
    offset = float(rng.integers(-round(3 * scale), round(3 * scale) + 1))  # not quite head-on
    side = np.array([-axis[1], axis[0]]) * offset
    pose_a = Pose((pose_b.centre[0] + side[0], pose_b.centre[1] + side[1]), _pose(rng, scale).matrix)
    return a, b, pose_a, pose_b, axis, _touching_distance(a, pose_a, b, pose_b, axis)


def _touching_distance(a: Shape, pose_a: Pose, b: Shape, pose_b: Pose, axis: np.ndarray) -> int:
    """The least whole distance d such that a, moved by -d * axis from ``pose_a``, does not overlap b."""
    reach = int(np.ceil(pose_a.extent(a) + pose_b.extent(b))) + 2
    canvas = 2 * reach + 8
    shift = canvas / 2.0 - np.asarray(pose_b.centre)  # draw b in the middle of a small canvas
    b_mask = placed_mask(b, pose_b.moved(*shift), canvas, canvas)
    for distance in range(reach, -1, -1):
        a_pose = pose_a.moved(*(shift - distance * axis))
        if np.any(placed_mask(a, a_pose, canvas, canvas) & b_mask):
            return distance + 1
    return 0


def _subject_object_program(rng: np.random.Generator, scale: float) -> tuple[list[Motion], str]:
    a, b, pose_a, pose_b, axis, touch = _pair_on_axis(rng, scale)
    steps = _steps(rng, scale, 4, 10)
    start = pose_a.moved(*(-(touch + steps) * axis))
    end = pose_a.moved(*(-touch * axis))
    return [(a, start, end), (b, pose_b, pose_b)], f"Move the {a.name} until it touches the {b.name}"


def _inter_subject_program(rng: np.random.Generator, scale: float) -> tuple[list[Motion], str]:
    a, b, pose_a, pose_b, axis, touch = _pair_on_axis(rng, scale)
    step_a, step_b = _steps(rng, scale, 3, 6), _steps(rng, scale, 3, 6)
    toward = bool(rng.random() < 0.5)
    gap = _steps(rng, scale, 2, 6)
    # Distances are centre separations along the axis; toward ends `gap` px short of touching.
    apart = touch + gap + (step_a + step_b if toward else 0)
    sign = 1.0 if toward else -1.0
    start_a = pose_a.moved(*(-apart * axis))
    end_a = start_a.moved(*(sign * step_a * axis))
    end_b = pose_b.moved(*(-sign * step_b * axis))
    named = f"the {a.name} and the {b.name}"
    subject = "the two shapes" if rng.random() < 0.5 else named
    verb = "toward each other" if toward else "away from each other"
    return [(a, start_a, end_a), (b, pose_b, end_b)], f"Move {subject} {verb}"


_PROGRAMS: dict[str, Callable[[np.random.Generator, float], tuple[list[Motion], str]]] = {
    "pose": _pose_program,
    "locomotion": _locomotion_program,
    "object_state": _object_state_program,
    "orientation": _orientation_program,
    "subject_object": _subject_object_program,
    "inter_subject": _inter_subject_program,
}

"""A small video corpus with known answers, made from scikit-image's photographs (they ship with it):
one clip per decision the miner makes, written with OpenCV (MPEG-4 Part 2, 10 fps, 192 x 144).

``write_corpus(folder)`` writes the clips and returns ``EXPECTED``: per file, the (status, reason) of
each 3-second window. The tests, the prefilter benchmark and the README's example all mine it.

- ``smooth_motion.mp4`` (6 s): a round photo patch glides over a still background: two kept windows.
- ``occluded.mp4``: the same glide while a magenta block slides over the patch: the prefilter passes
  it, a judge must refuse it (``judge:intact``); without a judge it is kept unjudged.
- ``pan.mp4``, ``zoom.mp4``: the camera moves over a still photo: ``camera_motion``.
- ``cut.mp4``: one photo, then another from frame 15: ``cut``.
- ``static.mp4``: a still photo with sensor noise: ``no_motion``.
- ``fade.mp4``: the glide, fading to black: ``exposure``.
- ``blurred.mp4``: the glide, out of focus: ``blur``.
- ``corrupt.mp4``: random bytes: ``unreadable``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data as photos

WIDTH, HEIGHT, FPS = 192, 144, 10
FRAMES = 30  # one 3 s window
PATCH = 40

EXPECTED: dict[str, list[tuple[str, str | None]]] = {
    "smooth_motion.mp4": [("kept", None), ("kept", None)],
    "occluded.mp4": [("kept", None)],
    "pan.mp4": [("rejected", "camera_motion")],
    "zoom.mp4": [("rejected", "camera_motion")],
    "cut.mp4": [("rejected", "cut")],
    "static.mp4": [("rejected", "no_motion")],
    "fade.mp4": [("rejected", "exposure")],
    "blurred.mp4": [("rejected", "blur")],
    "corrupt.mp4": [("unreadable", "decode_error")],
}
"""(status, reason) per window without a judge; a judge that sees the occluder rejects occluded.mp4."""

OCCLUDER_RGB = (255, 0, 255)


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _patch() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face as a PATCH x PATCH RGB patch, and its round mask."""
    face = _fit(photos.astronaut()[20:160, 160:300], PATCH, PATCH)
    yy, xx = np.mgrid[0:PATCH, 0:PATCH]
    mask = (yy - PATCH / 2 + 0.5) ** 2 + (xx - PATCH / 2 + 0.5) ** 2 <= (PATCH / 2) ** 2
    return face, mask


def glide(frames: int = FRAMES, start_x: int = 24, step: float = 1.0) -> list[np.ndarray]:
    """The patch moving right by ``step`` px a frame over the coffee photo (still): RGB frames."""
    background = _fit(photos.coffee(), WIDTH, HEIGHT)
    face, mask = _patch()
    clip = []
    for t in range(frames):
        frame = background.copy()
        x, y = round(start_x + step * t), 52 + round(6 * np.sin(t / 9))
        region = frame[y : y + PATCH, x : x + PATCH]
        region[mask] = face[mask]
        clip.append(frame)
    return clip


def _camera(zoom: bool) -> list[np.ndarray]:
    """A still photo seen by a camera that pans right 1.5 px a frame, or zooms in by 25 % over the clip."""
    scene = _fit(photos.rocket(), 320, 214)
    clip = []
    for t in range(FRAMES):
        if zoom:
            scale = 1.0 - 0.2 * t / (FRAMES - 1)
            w, h = int(WIDTH * scale), int(HEIGHT * scale)
            x0, y0 = (320 - w) // 2, (214 - h) // 2
        else:
            w, h, x0, y0 = WIDTH, HEIGHT, round(1.5 * t) + 20, 30
        clip.append(_fit(scene[y0 : y0 + h, x0 : x0 + w], WIDTH, HEIGHT))
    return clip


def _cut() -> list[np.ndarray]:
    first, second = _fit(photos.chelsea(), WIDTH, HEIGHT), _fit(photos.astronaut(), WIDTH, HEIGHT)
    return [first.copy() if t < 15 else second.copy() for t in range(FRAMES)]


def _static(rng: np.random.Generator) -> list[np.ndarray]:
    still = _fit(photos.coffee(), WIDTH, HEIGHT).astype(np.int16)
    return [np.clip(still + rng.integers(-2, 3, still.shape), 0, 255).astype(np.uint8) for _ in range(FRAMES)]


def _occluded() -> list[np.ndarray]:
    clip = glide()
    for t, frame in enumerate(clip):
        x = 192 - round(4.5 * t)  # slides in from the right and ends over the patch
        frame[44:104, max(x, 0) : max(x, 0) + 50] = OCCLUDER_RGB
    return clip


def _fade() -> list[np.ndarray]:
    return [(frame * (1 - t / (FRAMES - 1))).astype(np.uint8) for t, frame in enumerate(glide())]


def _blurred() -> list[np.ndarray]:
    return [cv2.GaussianBlur(frame, (0, 0), 3.0) for frame in glide()]


def write_clip(path: Path, frames: list[np.ndarray], fps: int = FPS, scale: float = 1.0) -> None:
    """Write RGB frames as an MPEG-4 video (the codec every FFmpeg build can write), ``scale`` times
    their size (bilinear: a larger video of the same scene, for timing)."""
    if scale != 1.0:
        size = (round(frames[0].shape[1] * scale), round(frames[0].shape[0] * scale))
        frames = [cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) for frame in frames]
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def write_corpus(folder: Path, seed: int = 0, scale: float = 1.0) -> dict[str, list[tuple[str, str | None]]]:
    """Write every clip of the module docstring into ``folder`` (created); returns ``EXPECTED``.

    ``scale`` enlarges every clip (the benchmark times 720p decoding with ``scale=5``); the answers
    are those of scale 1, which the tests check.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clips = {
        "smooth_motion.mp4": glide(2 * FRAMES, start_x=16, step=0.9),
        "occluded.mp4": _occluded(),
        "pan.mp4": _camera(zoom=False),
        "zoom.mp4": _camera(zoom=True),
        "cut.mp4": _cut(),
        "static.mp4": _static(rng),
        "fade.mp4": _fade(),
        "blurred.mp4": _blurred(),
    }
    for name, frames in clips.items():
        write_clip(folder / name, frames, scale=scale)
    (folder / "corrupt.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return EXPECTED

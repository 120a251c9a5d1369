"""Reading videos for mining: how many windows a video has, and the frames at chosen indices.

OpenCV's FFmpeg backend (``cv2.VideoCapture``) rather than PyAV: the project already depends on
OpenCV (the flow, the judge's stand-in), the wheels bundle FFmpeg, and ``CAP_PROP_POS_FRAMES`` seeks
to an exact frame (to the keyframe before it, then decoding forward), so a 3-second window costs a
few frame decodes instead of the whole video. Frames come back as uint8 RGB (H, W, 3).

A video that cannot be opened, has no frame count or frame rate, or fails to give a frame it says
it has raises ``VideoReadError``; the miner records it and goes on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")


class VideoReadError(RuntimeError):
    """A video (or one of its frames) could not be decoded; the message names the file and the frame."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: frame count, frames per second, and frame size in pixels."""

    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


@dataclass(frozen=True)
class Window:
    """A candidate pair: frames ``first``..``last`` (inclusive) of a video, ``start_s``..``end_s`` seconds."""

    index: int
    first: int
    last: int
    start_s: float
    end_s: float

    def probe_frames(self, probes: int) -> list[int]:
        """``probes`` frame indices evenly spread over the window, both boundaries included, no repeats."""
        spread = np.linspace(self.first, self.last, probes).round().astype(int)
        return sorted(set(spread.tolist()))


def windows(info: VideoInfo, window_s: float) -> list[Window]:
    """Back-to-back windows of ``window_s`` seconds from the start; a shorter tail is left out.

    Window k holds frames ``[k * n, (k + 1) * n)`` with ``n = round(window_s * fps)``, so at 30 fps a
    3 s window pairs frame 0 with frame 89, and its ``end_s`` is where the next window starts.
    """
    per_window = max(2, round(window_s * info.fps))
    count = info.frames // per_window
    return [
        Window(k, k * per_window, (k + 1) * per_window - 1,
               round(k * per_window / info.fps, 3), round((k + 1) * per_window / info.fps, 3))
        for k in range(count)
    ]  # fmt: skip


@contextmanager
def open_video(path: Path) -> Iterator[tuple[cv2.VideoCapture, VideoInfo]]:
    """An open capture and its info; raises VideoReadError when the file is not a readable video."""
    if not path.is_file():
        raise VideoReadError(f"{path}: not a regular file")
    _quiet_decoders()
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise VideoReadError(f"{path}: FFmpeg cannot open it as a video")
        info = VideoInfo(
            frames=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            fps=float(capture.get(cv2.CAP_PROP_FPS)),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        if info.frames < 2 or not info.fps > 0 or info.width < 1 or info.height < 1:
            raise VideoReadError(f"{path}: no usable frame count, rate or size ({info})")
        yield capture, info
    finally:
        capture.release()


def _quiet_decoders() -> None:
    """FFmpeg's and OpenCV's own messages about a broken file go to stderr, once per file, at any
    volume; the miner records the error in its manifest instead (the user's setting wins)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def read_frames(capture: cv2.VideoCapture, indices: Sequence[int], path: Path) -> list[np.ndarray]:
    """The frames at ``indices`` (ascending), as uint8 RGB (H, W, 3): one seek each, then neighbours read on.

    Indices that follow each other are read without seeking (``grab`` is cheaper than a seek that
    lands on the same keyframe and decodes forward again).
    """
    frames: list[np.ndarray] = []
    position: int | None = None  # the index the next read() returns, once known
    for index in indices:
        if position is None or index < position or index > position + 8:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            position = index
        while position < index:
            if not capture.grab():
                raise VideoReadError(f"{path}: frame {position} cannot be decoded")
            position += 1
        ok, frame = capture.read()
        position += 1
        if not ok or frame is None:
            raise VideoReadError(f"{path}: frame {index} cannot be decoded")
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames


def find_videos(source: Path) -> list[Path]:
    """The videos to mine: a folder's video files (recursively, sorted), or the lines of a list file.

    A list file holds one path per line (relative to the list's folder unless absolute); blank lines
    and lines starting with ``#`` are skipped. Raises FileNotFoundError when ``source`` does not exist.
    """
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not source.is_file():
        raise FileNotFoundError(f"no such folder or list of videos: {source}")
    if source.suffix.lower() in VIDEO_SUFFIXES:
        return [source]
    lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
    return [source.parent / line if not Path(line).is_absolute() else Path(line)
            for line in lines if line and not line.startswith("#")]  # fmt: skip

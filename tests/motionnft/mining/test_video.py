"""Windows of a video, frames read by seeking, and the videos a source names."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from motionnft.mining.corpus import write_clip
from motionnft.mining.video import VideoInfo, VideoReadError, Window, find_videos, open_video, read_frames, windows


def test_windows_are_back_to_back_and_drop_the_tail() -> None:
    found = windows(VideoInfo(frames=100, fps=10.0, width=8, height=8), 3.0)
    assert found == [Window(0, 0, 29, 0.0, 3.0), Window(1, 30, 59, 3.0, 6.0), Window(2, 60, 89, 6.0, 9.0)]
    assert windows(VideoInfo(frames=29, fps=10.0, width=8, height=8), 3.0) == []
    at_30fps = windows(VideoInfo(frames=90, fps=29.97, width=8, height=8), 3.0)
    assert [(w.first, w.last) for w in at_30fps] == [(0, 89)]


def test_probe_frames_spread_over_the_window() -> None:
    assert Window(1, 30, 59, 3.0, 6.0).probe_frames(5) == [30, 37, 44, 52, 59]
    assert Window(0, 0, 2, 0.0, 0.3).probe_frames(5) == [0, 1, 2]


def numbered_clip(path: Path, frames: int = 40) -> None:
    """Frame t is flat grey level 6 * t, so every frame differs from its neighbours."""
    write_clip(path, [np.full((48, 64, 3), 6 * t, np.uint8) for t in range(frames)])


@pytest.mark.parametrize("indices", [[0, 1, 2], [3, 20, 39], [39, 10, 0], [12, 13, 30, 31]])
def test_read_frames_returns_the_frames_asked_for(tmp_path: Path, indices: list[int]) -> None:
    """Seeking gives exactly the frame a decode from the start gives at that index."""
    path = tmp_path / "numbered.mp4"
    numbered_clip(path)
    with open_video(path) as (capture, info):
        assert (info.frames, info.fps, info.width, info.height) == (40, 10.0, 64, 48)
        every = read_frames(capture, list(range(40)), path)
    assert all(float(a.mean()) < float(b.mean()) for a, b in pairwise(every))
    with open_video(path) as (capture, _):
        frames = read_frames(capture, indices, path)
    for index, frame in zip(indices, frames, strict=True):
        np.testing.assert_array_equal(frame, every[index])
    assert all(frame.shape == (48, 64, 3) and frame.dtype == np.uint8 for frame in frames)


def test_reading_past_the_end_names_the_frame(tmp_path: Path) -> None:
    path = tmp_path / "numbered.mp4"
    numbered_clip(path, frames=10)
    with open_video(path) as (capture, _), pytest.raises(VideoReadError, match="frame 12"):
        read_frames(capture, [12], path)


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100])
def test_unreadable_files_raise(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoReadError, match=r"broken\.mp4"), open_video(path):
        pass
    with pytest.raises(VideoReadError, match="not a regular file"), open_video(tmp_path):
        pass


def test_find_videos_in_a_folder_and_a_list(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/one.mp4", "two.MOV", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert find_videos(tmp_path) == [tmp_path / "a/one.mp4", tmp_path / "two.MOV"]
    listing = tmp_path / "videos.txt"
    listing.write_text("# clips\na/one.mp4\n\n/abs/three.mp4\n")
    assert find_videos(listing) == [tmp_path / "a/one.mp4", Path("/abs/three.mp4")]
    assert find_videos(tmp_path / "two.MOV") == [tmp_path / "two.MOV"]
    with pytest.raises(FileNotFoundError, match="missing"):
        find_videos(tmp_path / "missing")

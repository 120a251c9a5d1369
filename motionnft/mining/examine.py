"""One video's windows up to the judge: decode the probes, measure, prefilter (CPU only, no network).

``examine_video`` is what a worker process (or a Ray Data task) runs per video. It opens the video once
and visits its windows in order, so each window costs a seek and ``probes`` frame decodes. The flow
estimator (OpenCV DIS) is built once per process, at the first call.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from motionnft.flow import FlowEstimator, build_flow_estimator
from motionnft.mining.prefilter import frame_measures, motion_measures, prefilter_reason
from motionnft.mining.settings import MiningSettings
from motionnft.mining.video import VideoReadError, Window, open_video, read_frames, windows
from motionnft.resizing import shrink_to_fit

_FLOW: FlowEstimator | None = None


def flow_estimator() -> FlowEstimator:
    """This process's DIS estimator ('medium' preset, one thread), built on first use."""
    global _FLOW
    if _FLOW is None:
        _FLOW = build_flow_estimator("dis", "cpu", preset="medium", num_threads=1)
    return _FLOW


@dataclass
class Examined:
    """A window after the prefilter: its measures, its reason (None: it passed) and its boundary frames.

    ``first`` and ``last`` are uint8 RGB (H, W, 3) at most ``settings.max_side`` on the long side; they
    are dropped (None) for a rejected window, which needs no pixels any more. ``error`` is set, and
    ``reason`` is ``decode_error``, when the window's frames could not be read.
    """

    video: str
    window: Window
    reason: str | None
    measures: dict[str, float] = field(default_factory=dict)
    first: np.ndarray | None = None
    last: np.ndarray | None = None
    error: str | None = None


@dataclass
class VideoExamined:
    """All the windows of one video examined, or why the video could not be read at all."""

    video: str
    windows: list[Examined]
    error: str | None = None


def measure_window(probes: list[np.ndarray], settings: MiningSettings) -> dict[str, float]:
    """Frame statistics of a window's probes (uint8 RGB at analysis size), and the flow's once those pass."""
    measures = frame_measures(probes[0], probes[-1], probes)
    if prefilter_reason(measures, settings) is not None:
        return measures  # no flow needed: the cheap checks already rejected it
    flows = flow_estimator().estimate(np.stack(probes[:-1]), np.stack(probes[1:])).numpy()
    measures.update(motion_measures(list(flows), settings.moving_px))
    return measures


def examine_video(video: str, settings: MiningSettings, skip: Collection[float] = ()) -> VideoExamined:
    """Examine each window of ``video`` but those starting at a time in ``skip`` (decided before).

    Never raises for a bad video: one that cannot be opened comes back with ``error`` and no windows;
    a window whose frames cannot be decoded comes back with reason ``decode_error``.
    """
    path = Path(video)
    try:
        with open_video(path) as (capture, info):
            every = windows(info, settings.window_s)
            if not every:
                return VideoExamined(video, [], f"{video}: shorter than one {settings.window_s} s window")
            left = [w for w in every if w.start_s not in skip]
            return VideoExamined(video, [_examine(capture, path, video, w, settings) for w in left])
    except VideoReadError as exc:
        return VideoExamined(video, [], str(exc))


def _examine(capture: cv2.VideoCapture, path: Path, video: str, window: Window, settings: MiningSettings) -> Examined:
    try:
        frames = read_frames(capture, window.probe_frames(settings.probes), path)
    except VideoReadError as exc:
        return Examined(video, window, "decode_error", error=str(exc))
    probes = [shrink_to_fit(frame, settings.analysis_side) for frame in frames]
    measures = {name: round(value, 6) for name, value in measure_window(probes, settings).items()}
    reason = prefilter_reason(measures, settings)
    if reason is not None:
        return Examined(video, window, reason, measures)
    first, last = (shrink_to_fit(frame, settings.max_side) for frame in (frames[0], frames[-1]))
    return Examined(video, window, None, measures, first, last)

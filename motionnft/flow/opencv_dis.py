"""Classical CPU optical flow: OpenCV's Dense Inverse Search (DIS) on grayscale uint8 images.

Conventions (see ``motionnft.flow.base``): images in, as uint8 ``(B, H, W, 3)`` RGB or float
``(B, 3, H, W)`` in [0, 1]; flow out, float32 ``(B, 2, H, W)`` in pixels from each source to its
target (channel 0 = x, 1 = y; a point at (x, y) in the source appears at (x + u, y + v) in the
target), on the estimator's device.

Threading. ``cv2.DISOpticalFlow`` objects keep per-call scratch state and are not thread-safe, so each
thread that computes flow gets its own object (a ``threading.local``); creating one is cheap, reusing
it saves re-allocating its buffers on every call. With ``num_threads > 1`` the pairs of one batch run
concurrently on a private thread pool: OpenCV releases the GIL inside ``calc``, so the threads really
run in parallel. The constructor also calls ``cv2.setNumThreads(1)``, which is process-wide: the
parallelism this class uses is the pool's and nothing else, so ``num_threads`` is the number of cores
it occupies (without it OpenCV would also parallelise inside each ``calc`` over every core, and a pool
on top would oversubscribe the machine).

Measured on the 2-core development machine (astronaut photo, batches of 16, best of 15, including
the RGB-to-gray conversion), ms per pair with ``num_threads=1`` -> ``num_threads=2``, machine idle:

====  =============  =============  ==============
size  ultrafast      fast           medium
====  =============  =============  ==============
256   0.47 -> 0.28   0.84 -> 0.58   4.2 -> 2.0
512   3.1 -> 2.1     4.4 -> 2.7     17.5 -> 9.7
====  =============  =============  ==============

Two threads give 1.4-2x while the second core is free, but with the other core busy (another
process's tests) the gain became erratic, from 0.7x (slower) to 1.8x. So the default stays at one
thread, which is also what the project asks of processes that share a small machine (tests, Ray
actors, the embedded demo); a service that owns its cores should set ``num_threads`` to their number.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, get_args

import cv2
import numpy as np
import torch

from motionnft.flow.base import ImageBatch, check_image_pair, to_uint8_hwc

DISPreset = Literal["ultrafast", "fast", "medium"]

_PRESET_CODES: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# cv2's DIS refuses images whose width and height are both below this (dis_flow.cpp).
_DIS_MIN_SIDE = 12


class DISFlow:
    """OpenCV DIS optical flow, one preset, optionally several pairs at a time.

    Args:
        preset: DIS speed/quality preset. At 512x512 on one core: ultrafast about 2.6 ms per pair,
            fast 3.5 ms, medium 17.5 ms (see the module docstring).
        device: where :meth:`estimate` puts its flow; the computation itself is always on the CPU.
        num_threads: how many pairs of a batch are computed at once (threads, one core each).

    Attributes:
        name: ``"opencv-dis-<preset>"``.
        device: the output device.
        num_threads: as given.
    """

    def __init__(self, preset: DISPreset = "medium", device: torch.device | str = "cpu", num_threads: int = 1) -> None:
        if preset not in _PRESET_CODES:
            raise ValueError(f"unknown DIS preset {preset!r}; choose one of {get_args(DISPreset)}")
        if num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}")
        self.name = f"opencv-dis-{preset}"
        self.device = torch.device(device)
        self.num_threads = num_threads
        self._preset_code = _PRESET_CODES[preset]
        self._per_thread = threading.local()
        # Process-wide on purpose: see the module docstring ("Threading").
        cv2.setNumThreads(1)
        self._pool = (
            ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="dis-flow") if num_threads > 1 else None
        )

    def estimate(self, sources: ImageBatch, targets: ImageBatch) -> torch.Tensor:
        """Flow from each source to its target.

        Args:
            sources: ImageBatch of B images, H x W (max(H, W) >= 12).
            targets: ImageBatch with the same B, H, W.

        Returns:
            float32 ``(B, 2, H, W)`` flow in pixels on ``self.device``; channel 0 = x, 1 = y.

        Raises:
            ValueError: malformed or mismatched batches, or images too small for DIS.
        """
        _, height, width = check_image_pair(sources, targets)
        if max(height, width) < _DIS_MIN_SIDE:
            raise ValueError(f"DIS needs images with H or W >= {_DIS_MIN_SIDE}, got {height}x{width}")
        source_pixels = to_uint8_hwc(sources)
        target_pixels = to_uint8_hwc(targets)
        pairs = zip(source_pixels, target_pixels, strict=True)
        if self._pool is None or len(source_pixels) == 1:  # one pair gains nothing from the pool
            flows = [self._estimate_pair(source, target) for source, target in pairs]
        else:
            flows = list(self._pool.map(lambda pair: self._estimate_pair(*pair), pairs))
        stacked = torch.from_numpy(np.stack(flows))  # (B, H, W, 2), x then y as cv2 returns them
        return stacked.permute(0, 3, 1, 2).contiguous().to(self.device)

    def close(self) -> None:
        """Stop the thread pool, if any; the estimator must not be used afterwards."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _estimate_pair(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Flow of one pair: uint8 ``(H, W, 3)`` RGB twice -> float32 ``(H, W, 2)`` pixels (x, y)."""
        dis = getattr(self._per_thread, "dis", None)
        if dis is None:
            dis = cv2.DISOpticalFlow.create(self._preset_code)
            self._per_thread.dis = dis
        source_gray = cv2.cvtColor(source, cv2.COLOR_RGB2GRAY)
        target_gray = cv2.cvtColor(target, cv2.COLOR_RGB2GRAY)
        # None, not a preallocated array: cv2 5.0's DIS reads a given array's contents (its results
        # then depend on them), though the stubs do not admit None.
        return np.asarray(dis.calc(source_gray, target_gray, None))  # type: ignore[call-overload]

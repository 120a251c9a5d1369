"""Optical-flow estimators behind one small protocol.

Every estimator takes two ImageBatches (uint8 ``(B, H, W, 3)`` RGB, or float ``(B, 3, H, W)`` in
[0, 1]) and returns float32 ``(B, 2, H, W)`` flow in pixels from each source to its target on its
device: channel 0 = x (horizontal), 1 = y (vertical); a point at (x, y) in the source appears at
(x + u, y + v) in the target. See ``motionnft.flow.base`` for the details.

Backends: ``"dis"`` (alias ``"opencv"``, OpenCV DIS on the CPU, no weights) and ``"raft_large"`` /
``"raft_small"`` (torchvision RAFT, needs weights; see ``motionnft.flow.raft``). Importing this
package does not import torchvision; building a RAFT estimator does.
"""

from __future__ import annotations

from typing import Any

import torch

from motionnft.flow.base import (
    FlowEstimator,
    ImageBatch,
    check_image_pair,
    image_batch_size,
    to_float_chw,
    to_uint8_hwc,
)
from motionnft.flow.opencv_dis import DISFlow
from motionnft.flow.raft import RAFTFlow, RAFTVariant

FLOW_BACKENDS: tuple[str, ...] = ("dis", "opencv", "raft_large", "raft_small")
"""Names :func:`build_flow_estimator` accepts; ``"opencv"`` is an alias of ``"dis"``."""

_RAFT_BACKENDS: dict[str, RAFTVariant] = {"raft_large": "raft_large", "raft_small": "raft_small"}


def build_flow_estimator(backend: str, device: str | torch.device = "cpu", **options: Any) -> FlowEstimator:
    """Build the flow estimator named ``backend`` (loading its model now, once).

    Args:
        backend: one of ``FLOW_BACKENDS``.
        device: where the estimator returns flow (and, for RAFT, where it runs).
        **options: passed on to the class: ``preset`` and ``num_threads`` for :class:`DISFlow`;
            ``checkpoint``, ``allow_random_weights``, ``num_flow_updates`` and ``dtype`` for
            :class:`RAFTFlow`.

    Raises:
        ValueError: unknown backend (the message lists the choices), or bad options.
    """
    if backend in ("dis", "opencv"):
        return DISFlow(device=device, **options)
    if backend in _RAFT_BACKENDS:
        return RAFTFlow(variant=_RAFT_BACKENDS[backend], device=device, **options)
    raise ValueError(f"unknown flow backend {backend!r}; choose one of {', '.join(FLOW_BACKENDS)}")


__all__ = [
    "FLOW_BACKENDS",
    "DISFlow",
    "FlowEstimator",
    "ImageBatch",
    "RAFTFlow",
    "build_flow_estimator",
    "check_image_pair",
    "image_batch_size",
    "to_float_chw",
    "to_uint8_hwc",
]

"""The optical-flow protocol every backend implements, and the image-batch conventions it accepts.

Tensor conventions (written once, here):

- An ``ImageBatch`` is either
  - uint8, channels-last ``(B, H, W, 3)`` RGB, as a numpy array or a torch tensor (the wire
    convention: what a decoded PNG or JPEG looks like), or
  - floating, channels-first ``(B, 3, H, W)`` RGB in ``[0, 1]``, as a torch tensor (the compute
    convention).

  The dtype decides the layout: uint8 means channels-last, floating means channels-first. Anything
  else (a float numpy array, int64, an unbatched ``(H, W, 3)`` image, a grayscale batch) is refused
  with a ``ValueError`` rather than guessed at.
- A flow is a float32 tensor ``(B, 2, H, W)`` in pixels. Channel 0 is the horizontal (x, column)
  displacement, channel 1 the vertical (y, row) displacement, with x growing to the right and y
  growing downwards, as in image indexing.
- Sign: the flow goes from each source to its target. A point at ``(x, y)`` in the source appears at
  ``(x + u, y + v)`` in the target, where ``(u, v) = flow[b, :, y, x]``.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
import torch

ImageBatch: TypeAlias = np.ndarray | torch.Tensor
"""uint8 ``(B, H, W, 3)`` (numpy or torch) or floating torch ``(B, 3, H, W)`` in [0, 1]."""


@runtime_checkable
class FlowEstimator(Protocol):
    """Something that turns pairs of images into dense optical flow.

    Attributes:
        name: a stable identifier of the backend and its setting, e.g. ``"opencv-dis-medium"`` or
            ``"torchvision-raft_large"``; it goes into logs, metrics and cache keys.
        device: where :meth:`estimate` puts its result.
    """

    name: str
    device: torch.device

    def estimate(self, sources: ImageBatch, targets: ImageBatch) -> torch.Tensor:
        """Flow from each source image to the target image at the same batch index.

        Args:
            sources: ``ImageBatch`` of B images, H x W pixels.
            targets: ``ImageBatch`` of the same B, H and W (the two may use different conventions).

        Returns:
            float32 ``(B, 2, H, W)`` flow in pixels on ``self.device``; channel 0 = x, 1 = y.
        """
        ...


def image_batch_size(batch: ImageBatch) -> tuple[int, int, int]:
    """Validate ``batch`` against the ImageBatch conventions and return its ``(B, H, W)``.

    Raises:
        TypeError: ``batch`` is neither a numpy array nor a torch tensor.
        ValueError: wrong dtype or shape for the layout the dtype implies, or an empty batch.
    """
    if not isinstance(batch, np.ndarray | torch.Tensor):
        raise TypeError(f"an image batch must be a numpy array or a torch tensor, got {type(batch).__name__}")
    shape = tuple(batch.shape)
    if _is_uint8(batch):
        if len(shape) != 4 or shape[3] != 3:
            raise ValueError(
                f"a uint8 image batch must be channels-last RGB (B, H, W, 3), got shape {shape}"
                + (" (add a batch dimension for a single image)" if len(shape) == 3 else "")
            )
        size = (shape[0], shape[1], shape[2])
    elif isinstance(batch, torch.Tensor) and batch.is_floating_point():
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"a floating image batch must be channels-first RGB (B, 3, H, W), got shape {shape}")
        size = (shape[0], shape[2], shape[3])
    else:
        raise ValueError(
            f"an image batch must be uint8 (B, H, W, 3) or a floating torch tensor (B, 3, H, W) in [0, 1], "
            f"got {type(batch).__name__} of dtype {batch.dtype}"
        )
    if min(size) <= 0:
        raise ValueError(f"an image batch must hold at least one image of at least 1x1 pixels, got shape {shape}")
    return size


def check_image_pair(sources: ImageBatch, targets: ImageBatch) -> tuple[int, int, int]:
    """Validate a source batch and a target batch together and return their common ``(B, H, W)``.

    Raises:
        ValueError: either batch is malformed, or the two differ in batch size or image size.
    """
    source_size = image_batch_size(sources)
    target_size = image_batch_size(targets)
    if source_size != target_size:
        raise ValueError(f"sources and targets must have the same (B, H, W), got {source_size} and {target_size}")
    return source_size


def to_uint8_hwc(batch: ImageBatch) -> np.ndarray:
    """Convert an ImageBatch to a C-contiguous uint8 numpy array ``(B, H, W, 3)`` on the CPU.

    Floating input is scaled by 255 and rounded to the nearest integer, so ``to_float_chw`` followed
    by ``to_uint8_hwc`` gives the original uint8 pixels back exactly.

    Raises:
        ValueError: see :func:`image_batch_size`; also floating values outside [0, 1] or not finite.
    """
    image_batch_size(batch)
    if isinstance(batch, np.ndarray):
        return np.ascontiguousarray(batch)
    if batch.dtype == torch.uint8:
        return np.ascontiguousarray(batch.detach().cpu().numpy())
    _check_unit_range(batch)
    scaled = (batch.detach().float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(scaled.permute(0, 2, 3, 1).cpu().numpy())


def to_float_chw(batch: ImageBatch, device: torch.device | str = "cpu") -> torch.Tensor:
    """Convert an ImageBatch to a float32 tensor ``(B, 3, H, W)`` in [0, 1] on ``device``.

    uint8 input crosses to the device before it is widened, because uint8 is a quarter of the bytes.
    A float32 input already on ``device`` is returned as is (no copy): do not modify the result in
    place.

    Raises:
        ValueError: see :func:`image_batch_size`; also floating values outside [0, 1] or not finite.
    """
    image_batch_size(batch)
    target_device = torch.device(device)
    if _is_uint8(batch):
        # torch warns on read-only arrays (decoded images are): copy only those.
        if isinstance(batch, np.ndarray):
            pixels = torch.from_numpy(batch if batch.flags.writeable else batch.copy())
        else:
            pixels = batch.detach()
        pixels = pixels.to(target_device, non_blocking=True)
        return pixels.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()
    assert isinstance(batch, torch.Tensor)  # image_batch_size admitted only floating tensors here
    _check_unit_range(batch)
    return batch.detach().to(device=target_device, dtype=torch.float32).contiguous()


def _is_uint8(batch: ImageBatch) -> bool:
    """Whether ``batch`` holds uint8 pixels (numpy or torch)."""
    if isinstance(batch, np.ndarray):
        return batch.dtype == np.uint8
    return batch.dtype == torch.uint8


def _check_unit_range(batch: torch.Tensor) -> None:
    """Refuse floating pixels outside [0, 1] (e.g. a 0-255 float image) or NaN/inf.

    This reads two numbers back from the device; it is cheap next to any flow network and turns a
    silent factor-of-255 mistake into an error.
    """
    low, high = torch.aminmax(batch.detach())
    low_value, high_value = float(low), float(high)
    # Written as "not inside" so that NaN, which fails every comparison, is refused too.
    if not (low_value >= 0.0 and high_value <= 1.0):
        raise ValueError(
            f"a floating image batch must hold values in [0, 1], got min {low_value} and max {high_value}"
            " (divide 0-255 pixels by 255, or pass uint8 (B, H, W, 3))"
        )

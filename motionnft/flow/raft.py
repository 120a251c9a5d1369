"""Learned optical flow: torchvision's RAFT (large or small), batched on any torch device.

Conventions (see ``motionnft.flow.base``): images in, as uint8 ``(B, H, W, 3)`` RGB or float
``(B, 3, H, W)`` in [0, 1]; flow out, float32 ``(B, 2, H, W)`` in pixels from each source to its
target (channel 0 = x, 1 = y; a point at (x, y) in the source appears at (x + u, y + v) in the
target), on the estimator's device.

Weights are never downloaded. In order of preference they come from
1. ``checkpoint``: a file holding a state dict (raw, or under ``"state_dict"`` or ``"model"``),
   loaded strictly and with ``weights_only=True`` (no pickle code runs);
2. torchvision's pretrained weights (``Raft_Large_Weights.DEFAULT`` / ``Raft_Small_Weights.DEFAULT``),
   only if the file is already in torchvision's cache, ``torch.hub.get_dir()/checkpoints/<file>``;
3. random initialisation, only with ``allow_random_weights=True`` (speed tests, plumbing tests), and
   with a logged warning: such a model's flow is meaningless.

Preprocessing matches torchvision's ``weights.transforms()``: [0, 1] is mapped to [-1, 1]. RAFT needs
H and W that are multiples of 8 and at least 128 (its correlation pyramid halves the 1/8-resolution
feature map three times), so images are padded on the bottom and right by replicating the edge pixels
and the flow is cropped back. Padding only bottom/right keeps the image's pixel (0, 0) at (0, 0), so
unpadding is a plain crop and no offset is ever applied to the flow.

Speed (random weights, 512x512, ms per flow, 12 updates): on an H200, batches of 32, raft_small 5.6
in float32 and 4.1 in bfloat16, raft_large 15.4 and 6.7; on one core of the 2-core development
machine raft_small takes about 1.5 s and raft_large about 5.7 s.

torchvision is imported only when a RAFT model is built, so that ``import motionnft.flow`` stays
light on the CPU (DIS) path.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlparse

import torch
import torch.nn.functional as F

from motionnft.flow.base import ImageBatch, check_image_pair, to_float_chw

if TYPE_CHECKING:
    from torchvision.models.optical_flow import RAFT

RAFTVariant = Literal["raft_large", "raft_small"]

RAFT_MULTIPLE = 8
"""RAFT's input H and W must be multiples of this (its features are at 1/8 resolution)."""
RAFT_MIN_SIZE = 128
"""RAFT's input H and W must be at least this (1/8 resolution, then halved three times)."""

# float32 runs as is; the half-precision types run under torch.autocast.
_COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

_logger = logging.getLogger(__name__)


class RAFTFlow:
    """torchvision RAFT behind the FlowEstimator protocol; the model loads once, here.

    Args:
        variant: ``"raft_large"`` (5.3 M parameters) or ``"raft_small"`` (1.0 M).
        device: where the model runs and where the flow is returned.
        checkpoint: a state-dict file for ``variant``; if None, torchvision's cached pretrained
            weights are used (see the module docstring).
        allow_random_weights: fall back to random weights when no weights are found, instead of
            raising.
        num_flow_updates: RAFT's recurrent refinement steps (12 is torchvision's default; fewer is
            faster and coarser).
        dtype: the compute precision: ``torch.float32``, or ``torch.float16`` / ``torch.bfloat16``
            to run under ``torch.autocast`` (the weights stay float32: torchvision's RAFT builds
            float32 coordinate grids inside, so a model cast to half precision fails). The returned
            flow is float32 either way.

    Attributes:
        name: ``"torchvision-<variant>"``.
        device: the model's device.
        weights_source: where the weights came from: the checkpoint path, the cached file's path,
            or ``"random"``.
        model: the torchvision ``RAFT`` module, float32, in eval mode on ``device``.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist, or no weights were found and random
            weights were not allowed.
        ValueError: the checkpoint does not fit ``variant``, or a bad argument.
    """

    def __init__(
        self,
        variant: RAFTVariant = "raft_large",
        device: torch.device | str = "cpu",
        checkpoint: str | Path | None = None,
        allow_random_weights: bool = False,
        num_flow_updates: int = 12,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if variant not in get_args(RAFTVariant):
            raise ValueError(f"unknown RAFT variant {variant!r}; choose one of {get_args(RAFTVariant)}")
        if num_flow_updates < 1:
            raise ValueError(f"num_flow_updates must be at least 1, got {num_flow_updates}")
        if dtype not in _COMPUTE_DTYPES:
            raise ValueError(f"dtype must be one of {_COMPUTE_DTYPES}, got {dtype}")
        self.name = f"torchvision-{variant}"
        self.device = torch.device(device)
        self.num_flow_updates = num_flow_updates
        self.dtype = dtype
        model = build_raft_model(variant)
        state, self.weights_source = find_raft_weights(variant, checkpoint, allow_random_weights)
        if state is not None:
            load_raft_state(model, state, variant, self.weights_source)
        self.model = model.to(self.device).eval()

    def estimate(self, sources: ImageBatch, targets: ImageBatch) -> torch.Tensor:
        """Flow from each source to its target, the whole batch in one forward pass.

        Args:
            sources: ImageBatch of B images, H x W (any size; padded internally).
            targets: ImageBatch with the same B, H, W.

        Returns:
            float32 ``(B, 2, H, W)`` contiguous flow in pixels on ``self.device``; channel 0 = x,
            1 = y. An ordinary tensor (not an inference tensor), so callers may modify it in place.
        """
        _, height, width = check_image_pair(sources, targets)
        padded_flow = self._predict(sources, targets)
        # Copied outside inference mode: the copy is an ordinary tensor and drops the padding.
        return crop_to_size(padded_flow, (height, width)).to(torch.float32).clone()

    @torch.inference_mode()
    def _predict(self, sources: ImageBatch, targets: ImageBatch) -> torch.Tensor:
        """RAFT's last refined flow ``(B, 2, H', W')`` on the padded images (an inference tensor)."""
        padded_sources, _ = pad_for_raft(self._normalize(sources))
        padded_targets, _ = pad_for_raft(self._normalize(targets))
        reduced = self.dtype != torch.float32
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=reduced):
            predictions = self.model(padded_sources, padded_targets, num_flow_updates=self.num_flow_updates)
        # RAFT returns one flow per refinement step; the last is the refined one.
        return predictions[-1]

    def _normalize(self, batch: ImageBatch) -> torch.Tensor:
        """ImageBatch -> float32 ``(B, 3, H, W)`` in [-1, 1] on the model's device (as torchvision's
        ``OpticalFlow`` transform does)."""
        unit = to_float_chw(batch, self.device)
        # Out of place: to_float_chw may hand back the caller's own tensor.
        return unit * 2.0 - 1.0


def pad_for_raft(images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` on the bottom and right, replicating edge pixels, to a size RAFT accepts.

    Returns:
        The padded ``(B, C, H', W')`` with H', W' multiples of ``RAFT_MULTIPLE`` and at least
        ``RAFT_MIN_SIZE``, and the original ``(H, W)`` to give to :func:`crop_to_size`.
    """
    height, width = images.shape[-2:]
    padded_height = max(RAFT_MIN_SIZE, math.ceil(height / RAFT_MULTIPLE) * RAFT_MULTIPLE)
    padded_width = max(RAFT_MIN_SIZE, math.ceil(width / RAFT_MULTIPLE) * RAFT_MULTIPLE)
    if (padded_height, padded_width) == (height, width):
        return images, (height, width)
    # F.pad's order is (left, right, top, bottom) for the last two dimensions.
    padding = (0, padded_width - width, 0, padded_height - height)
    return F.pad(images, padding, mode="replicate"), (height, width)


def crop_to_size(padded: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_for_raft`: keep the top-left ``size = (H, W)`` of ``(B, C, H', W')``."""
    height, width = size
    return padded[..., :height, :width]


def build_raft_model(variant: RAFTVariant) -> RAFT:
    """A randomly initialised torchvision RAFT of ``variant`` (imports torchvision on first use)."""
    from torchvision.models import optical_flow

    builder = optical_flow.raft_large if variant == "raft_large" else optical_flow.raft_small
    return builder(weights=None, progress=False)


def pretrained_cache_path(variant: RAFTVariant) -> Path:
    """Where torchvision keeps ``variant``'s default pretrained weights once downloaded.

    That is ``torch.hub.get_dir()/checkpoints/<file name of weights.url>``; copy the file there (or
    point ``TORCH_HOME`` at a directory that has it) to use pretrained RAFT offline.
    """
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    weights = Raft_Large_Weights.DEFAULT if variant == "raft_large" else Raft_Small_Weights.DEFAULT
    file_name = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def find_raft_weights(
    variant: RAFTVariant, checkpoint: str | Path | None, allow_random_weights: bool
) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Pick ``variant``'s weights without downloading anything (order: module docstring).

    Returns:
        ``(state_dict, source)``; ``state_dict`` is None when random weights are to be kept.

    Raises:
        FileNotFoundError: ``checkpoint`` is missing, or nothing was found and random weights were
            not allowed.
        ValueError: the file does not hold a state dict.
    """
    if checkpoint is not None:
        path = Path(checkpoint)
        return read_state_dict(path), str(path)
    cached = pretrained_cache_path(variant)
    if cached.is_file():
        return read_state_dict(cached), str(cached)
    if not allow_random_weights:
        raise FileNotFoundError(
            f"no weights for {variant}: no checkpoint was given and torchvision's pretrained file is not "
            f"at {cached}. Copy {cached.name} there (or set TORCH_HOME to a directory whose hub/checkpoints "
            f"holds it), pass checkpoint=<state-dict file>, or pass allow_random_weights=True for a "
            f"meaningless random model (tests and speed measurements only)."
        )
    _logger.warning(
        "RAFT %s uses RANDOM weights: no checkpoint given and %s does not exist; its flow is meaningless",
        variant,
        cached,
    )
    return None, "random"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path``: raw, or wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be read safely or does not hold a mapping of names to tensors.
    """
    if not path.is_file():
        raise FileNotFoundError(f"RAFT checkpoint {path} does not exist")
    try:
        # weights_only: a checkpoint is data, and must not be able to run code when loaded.
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"RAFT checkpoint {path} could not be read as a state dict: {error}") from error
    if isinstance(loaded, dict):
        for wrapper_key in ("state_dict", "model"):
            if isinstance(loaded.get(wrapper_key), dict):
                loaded = loaded[wrapper_key]
                break
    if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise ValueError(
            f"RAFT checkpoint {path} does not hold a state dict (a mapping of parameter names to tensors, "
            f'optionally under "state_dict" or "model"), got {type(loaded).__name__}'
        )
    return loaded


def load_raft_state(model: RAFT, state: dict[str, torch.Tensor], variant: str, source: str) -> None:
    """Load ``state`` into ``model`` strictly, explaining a mismatch in one short message.

    Raises:
        ValueError: names or shapes differ; the message names ``source`` and the first few culprits.
    """
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    reshaped = sorted(name for name in expected.keys() & state.keys() if expected[name].shape != state[name].shape)
    if missing or unexpected or reshaped:
        found = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatches": reshaped}
        found = {kind: names for kind, names in found.items() if names}
        problems = [f"{len(names)} {kind} (e.g. {', '.join(names[:3])})" for kind, names in found.items()]
        raise ValueError(
            f"RAFT checkpoint {source} does not fit torchvision {variant}: {'; '.join(problems)}. "
            "Was it saved from the other RAFT variant, or from another RAFT implementation?"
        )
    model.load_state_dict(state, strict=True)

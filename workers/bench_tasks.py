"""What crosses between the bench driver and its renderers: the source, the items, the results.

Plain frozen dataclasses of numpy arrays, CPU tensors and strings: Ray ships them with its own
serialiser. Images are uint8 RGB (S, S, 3), S = the source's `size` in pixels; PNGs are bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from workers.policies.factory import PolicySpec

Kind = Literal["run", "checkpoint", "preset", "diffusers"]


class SpecError(ValueError):
    """A SPEC that names nothing renderable, or settings that do not fit it; the message says which."""


def item_seed(seed: int, item_id: str) -> int:
    """A 63-bit seed for one bench item, the same in every process and on every machine (sha256, not hash())."""
    key = f"bench:{seed}:{item_id}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class RenderSource:
    """What renders the edits, and how: everything a renderer needs to load it, with no file to read
    but the model's own weights (`policy.pretrained` or `path` of a diffusers directory).

    Attributes:
        spec: the SPEC as given; kind: how it was read; family: the policy family or pipeline family.
        steps / guidance: sampler steps and guidance (None: the family takes none).
        size: the side S of the square inputs and outputs, pixels.
        path: the file or folder the settings came from (checkpoint, preset, diffusers directory).
        policy: the project's policy (kinds run, checkpoint, preset); None for a diffusers pipeline.
        adapter: the EMA LoRA weights to sample with (run, checkpoint); None samples the frozen base.
        pipeline: the diffusers pipeline class name (kind diffusers).
        options: the pipeline's fixed call settings besides steps and guidance (e.g. its negative prompt).
    """

    spec: str
    kind: Kind
    family: str
    steps: int
    guidance: float | None
    size: int
    path: str
    policy: PolicySpec | None = None
    adapter: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    pipeline: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """What decides the pixels (JSON types): two renders into one folder must agree on all of it."""
        return {
            "kind": self.kind, "family": self.family, "steps": self.steps, "guidance": self.guidance,
            "size": self.size, "source": self.path, "pipeline": self.pipeline, "options": self.options,
        }  # fmt: skip


@dataclass(frozen=True, eq=False)
class RenderItem:
    """One edit to render: the item's id and instruction, its input uint8 (S, S, 3), its seed."""

    id: str
    prompt: str
    image: np.ndarray
    seed: int


@dataclass(frozen=True)
class RenderResult:
    """One item's PNG bytes, or the error that stopped it; `seconds` of wall time on the renderer."""

    id: str
    png: bytes | None
    error: str | None = None
    seconds: float = 0.0


def describe(exc: BaseException) -> str:
    """'Type: first line of the message', for a failure record (Ray's messages carry tracebacks after it)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__

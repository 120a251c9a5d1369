"""Shared pieces of the policy tests: a tiny FLUX.1 Kontext policy (CPU, float32) and moving-square inputs."""

from __future__ import annotations

import numpy as np

from tests.workers.squares import moving_squares
from workers.policies.base import LoraSettings
from workers.policies.flux_kontext import FluxKontextPolicy
from workers.policies.tiny import build_tiny_kontext

SIZE = 64
GUIDANCE = 2.5
# init="random": both LoRA factors random, so an adapter changes the output from the first step on.
VISIBLE_LORA = LoraSettings(rank=4, alpha=8, init="random")


def tiny_policy(lora: LoraSettings = VISIBLE_LORA) -> FluxKontextPolicy:
    return FluxKontextPolicy(build_tiny_kontext(0), size=SIZE, lora=lora)


def edit_inputs(n: int = 4) -> tuple[list[str], np.ndarray]:
    """Prompts and uint8 (n, SIZE, SIZE, 3) source images."""
    pairs = moving_squares(n, seed=0, size=SIZE)
    return [p[2] for p in pairs], np.stack([p[0] for p in pairs])

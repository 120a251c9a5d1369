"""Edits of known quality for a synthetic bench (`motionnft data synth`): the bench's own checks.

Each "model" re-renders an item's scene with a known share of its motion (`generate_pair`'s
`motion`): `target` (all of it, the ground truth), `half`, `none` (the input), `opposite` (reversed),
and `shuffled` (another item's target: right scene nowhere). Their order is known by construction,
so a scorer that ranks them otherwise is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from motionnft.data.synth import SynthPair, generate_pair

KNOWN_MODELS = ("target", "half", "none", "opposite", "shuffled")
"""Best first."""
_MOTION = {"target": 1.0, "half": 0.5, "none": 0.0, "opposite": -1.0}


def known_edits(pairs: Sequence[SynthPair], name: str, seed: int, size: int) -> list[np.ndarray]:
    """Model `name`'s uint8 (size, size, 3) edit of every pair (pairs of `generate(n, seed, size)`)."""
    if name == "shuffled":
        return [pairs[(i + 1) % len(pairs)].target_image for i in range(len(pairs))]
    if name not in _MOTION:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(KNOWN_MODELS)}")
    return [generate_pair(seed, i, size, _MOTION[name]).target_image for i in range(len(pairs))]


def write_known_models(pairs: Sequence[SynthPair], root: Path, seed: int, size: int,
                       names: Sequence[str] = KNOWN_MODELS) -> dict[str, Path]:  # fmt: skip
    """`root/<name>/<item id>.png` for each model; returns name -> folder."""
    folders = {}
    for name in names:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for pair, edit in zip(pairs, known_edits(pairs, name, seed, size), strict=True):
            Image.fromarray(edit).save(folder / f"{pair.id}.png")
        folders[name] = folder
    return folders

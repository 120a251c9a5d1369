"""Shared pieces of the bench tests: a small synthetic bench on disk, the tiny presets, reading outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from motionnft.data.synth import generate
from motionnft.data.synth_io import write_dataset

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo_cpu.yaml"
DEMO_QWEN = REPO / "configs" / "demo_cpu_qwen.yaml"
SIZE = 64


def write_bench(folder: Path, n: int = 3) -> Path:
    """n synthetic MotionEdit-style items at 64 x 64 (the `motionnft data synth` generator): bench.jsonl."""
    return write_dataset(generate(n, 7, SIZE), folder, "bench.jsonl", progress=False)


def input_image(bench: Path, item_id: str) -> Path:
    """The input image file of one item of a `write_bench` bench."""
    return bench.parent / "images" / f"{item_id}_input.png"


def pixels(path: Path) -> np.ndarray:
    """A PNG's uint8 (H, W, C) pixels."""
    with Image.open(path) as image:
        return np.asarray(image)


def mtimes(folder: Path) -> dict[str, int]:
    """Every PNG of `folder` by name -> its modification time, ns."""
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*.png"))}

"""The demo's picture grid: for held-out pairs, input | target | before | after, one row each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLUMNS = ("input", "target", "before", "after")


def save_grid(run_dir: Path, rows: int = 8, scale: int = 2) -> Path:
    """Grid from the first and last saved evaluations (`eval-*.npz`) to `run_dir/grid.png`."""
    saved = sorted(run_dir.glob("eval-*.npz"))
    if len(saved) < 2:
        raise FileNotFoundError(f"need two evaluations in {run_dir}, found {len(saved)}")
    before, after = np.load(saved[0]), np.load(saved[-1])
    count = min(rows, len(before["ids"]))
    height, width = before["inputs"].shape[1:3]
    cell_h, cell_w, pad, header = height * scale, width * scale, 4, 16
    grid = Image.new("RGB", (len(COLUMNS) * (cell_w + pad) + pad, header + count * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(COLUMNS):
        draw.text((pad + c * (cell_w + pad), 2), name, fill=(0, 0, 0))
    for r in range(count):
        cells = (before["inputs"][r], before["targets"][r], before["edits"][r], after["edits"][r])
        for c, pixels in enumerate(cells):
            tile = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).resize(
                (cell_w, cell_h), Image.Resampling.NEAREST
            )
            grid.paste(tile, (pad + c * (cell_w + pad), header + pad + r * (cell_h + pad)))
    path = run_dir / "grid.png"
    grid.save(path)
    return path

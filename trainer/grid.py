"""The demo's picture grid: for held-out pairs, input | target | before | after, one row each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLUMNS = ("input", "target", "before", "after")


def save_grid(run_dir: Path, rows: int = 8, scale: int = 2, ids: Sequence[str] | None = None) -> Path:
    """Grid from the first and last saved evaluations (`eval-*.npz`) to `run_dir/grid.png`: the pairs
    named by `ids` (chosen before training: `trainer.demo_pictures.demo_rows`), else the first `rows`."""
    saved = sorted(run_dir.glob("eval-*.npz"))
    if len(saved) < 2:
        raise FileNotFoundError(f"need two evaluations in {run_dir}, found {len(saved)}")
    before, after = np.load(saved[0]), np.load(saved[-1])
    chosen = [str(i) for i in before["ids"][:rows]] if ids is None else list(ids)
    pairs = matched_rows(before, after, chosen)
    count = len(pairs)
    height, width = before["inputs"].shape[1:3]
    cell_h, cell_w, pad, header = height * scale, width * scale, 4, 16
    grid = Image.new("RGB", (len(COLUMNS) * (cell_w + pad) + pad, header + count * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(COLUMNS):
        draw.text((pad + c * (cell_w + pad), 2), name, fill=(0, 0, 0))
    for r, (b, a) in enumerate(pairs):
        cells = (before["inputs"][b], before["targets"][b], before["edits"][b], after["edits"][a])
        for c, pixels in enumerate(cells):
            tile = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).resize(
                (cell_w, cell_h), Image.Resampling.NEAREST
            )
            grid.paste(tile, (pad + c * (cell_w + pad), header + pad + r * (cell_h + pad)))
    path = run_dir / "grid.png"
    grid.save(path)
    return path


def matched_rows(
    before: dict[str, np.ndarray], after: dict[str, np.ndarray], ids: Sequence[str]
) -> list[tuple[int, int]]:
    """(row in `before`, row in `after`) of each id in `ids` that both saved evaluations hold, in order."""
    where_before = {str(i): n for n, i in enumerate(before["ids"])}
    where_after = {str(i): n for n, i in enumerate(after["ids"])}
    return [(where_before[i], where_after[i]) for i in ids if i in where_before and i in where_after]

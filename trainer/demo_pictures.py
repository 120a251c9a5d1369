"""The demo's pictures of held-out edits before and after training, and how well an edit keeps the scene.

Rows are chosen before training, from the first evaluation alone (``demo_rows``): the first held-out
pair of each category in id order, round-robin, so nobody picks the rows that happened to improve.
From the first and last saved evaluations (``eval-*.npz``) it draws

- ``grid.png``: input | target | before | after, one row per chosen pair (``trainer.grid``);
- ``before_after.gif``: the first rows' input, then their before edit, input again, then the after
  edit, so the motion each makes shows as movement;
- ``flows.png``: for the same rows, the flow (OpenCV DIS) of input -> target, input -> before and
  input -> after, on one colour scale (torchvision's ``flow_to_image``).

``scene_psnr`` measures preservation: PSNR to the input over the pixels the true motion leaves alone
(where input and target agree, away from the moving shapes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy.ndimage import binary_erosion

from motionnft.flow import build_flow_estimator
from trainer.grid import matched_rows

UNMOVED_TOLERANCE = 12  # |input - target| summed over RGB below this: a pixel the motion leaves alone
MAX_PSNR = 60.0  # dB, an exact copy (the cap keeps the mean finite)


def saved_evaluations(run_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The first and the last saved evaluation of a run (arrays: ids, inputs, targets, edits)."""
    saved = sorted(run_dir.glob("eval-*.npz"))
    if len(saved) < 2:
        raise FileNotFoundError(f"need two evaluations in {run_dir}, found {len(saved)}")
    first, last = np.load(saved[0]), np.load(saved[-1])
    return {k: first[k] for k in first.files}, {k: last[k] for k in last.files}


def demo_rows(items: Sequence[dict[str, Any]], count: int = 8) -> list[str]:
    """Ids of ``count`` held-out pairs, one per category in turn (first by id in each): chosen before training."""
    by_category: dict[str, list[str]] = {}
    for item in sorted(items, key=lambda i: i["id"]):
        by_category.setdefault(item["category"], []).append(item["id"])
    chosen: list[str] = []
    queues = [list(ids) for _, ids in sorted(by_category.items())]
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def scene_psnr(source: np.ndarray, target: np.ndarray, edit: np.ndarray) -> float:
    """PSNR (dB) of ``edit`` against ``source`` over the pixels the true motion does not touch.

    The mask is where source and target agree within UNMOVED_TOLERANCE, eroded by 2 px so the shapes'
    outlines (which a good edit does change) stay out of it. PSNR rather than SSIM: the synthetic
    backgrounds are low-contrast, where SSIM's constants forgive a flat or colour-shifted copy (a +40
    brightness shift still scores SSIM 0.93); every grey level of error costs PSNR. Capped at
    MAX_PSNR (an exact copy); NaN when nothing is unmoved.
    """
    unmoved = np.abs(source.astype(int) - target.astype(int)).sum(axis=-1) < UNMOVED_TOLERANCE
    unmoved = binary_erosion(unmoved, iterations=2)
    if not unmoved.any():
        return float("nan")
    error = float(np.mean((edit.astype(np.float64) - source.astype(np.float64))[unmoved] ** 2))
    return MAX_PSNR if error <= 255.0**2 * 10 ** (-MAX_PSNR / 10) else 10 * math.log10(255.0**2 / error)


def _tile(pixels: np.ndarray, scale: int) -> Image.Image:
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def save_animation(run_dir: Path, ids: Sequence[str], rows: int = 4, scale: int = 3) -> Path:
    """``before_after.gif``: input, before edit, input, after edit (labelled), the first ``rows`` ids side by side."""
    before, after = saved_evaluations(run_dir)
    picked = matched_rows(before, after, ids)[:rows]  # an id missing from either is left out of both
    frames = []
    for label, source, index in (("input", before, 0), ("before", before, 1), ("input", after, 0),
                                 ("after", after, 1)):  # fmt: skip
        tiles = [_tile(source["inputs" if index == 0 else "edits"][b if source is before else a], scale)
                 for b, a in picked]  # fmt: skip
        frame = Image.new("RGB", (sum(t.width + 4 for t in tiles) + 4, tiles[0].height + 22), "white")
        for n, tile in enumerate(tiles):
            frame.paste(tile, (4 + n * (tile.width + 4), 18))
        ImageDraw.Draw(frame).text((4, 3), label, fill=(0, 0, 0))
        frames.append(frame)
    path = run_dir / "before_after.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[600, 900, 600, 900], loop=0)
    return path


def save_flow_grid(run_dir: Path, ids: Sequence[str], rows: int = 4, scale: int = 3) -> Path:
    """``flows.png``: per row, the flow of input -> target, input -> before edit and input -> after edit."""
    from torchvision.utils import flow_to_image

    before, after = saved_evaluations(run_dir)
    picked = matched_rows(before, after, ids)[:rows]  # an id missing from either is left out of both
    flow = build_flow_estimator("dis", "cpu")
    sources = np.stack([before["inputs"][b] for b, _ in picked])
    ends = [np.stack([before["targets"][b] for b, _ in picked]), np.stack([before["edits"][b] for b, _ in picked]),
            np.stack([after["edits"][a] for _, a in picked])]  # fmt: skip
    flows = torch.cat([flow.estimate(sources, end) for end in ends])  # (3 * rows, 2, H, W), rows per column
    colours = flow_to_image(flows).permute(0, 2, 3, 1).numpy()  # one colour scale for every panel
    height, width = sources.shape[1:3]
    cell_w, cell_h, pad, header = width * scale, height * scale, 4, 16
    grid = Image.new("RGB", (4 * (cell_w + pad) + pad, header + len(picked) * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(("input", "flow to target", "flow to before", "flow to after")):
        draw.text((pad + c * (cell_w + pad), 2), name, fill=(0, 0, 0))
    for r in range(len(picked)):
        cells = [sources[r], *(colours[c * len(picked) + r] for c in range(3))]
        for c, pixels in enumerate(cells):
            grid.paste(_tile(pixels, scale), (pad + c * (cell_w + pad), header + pad + r * (cell_h + pad)))
    path = run_dir / "flows.png"
    grid.save(path)
    return path

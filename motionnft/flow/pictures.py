"""Pictures of flow fields: one row per edit, columns edit flow V_e, target flow V_g and V_e - V_g.

All panels share one colour scale (torchvision's `flow_to_image` normalises by the largest vector of
the whole batch), so a weak edit looks pale next to its target instead of being stretched to match.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from motionnft.scoring import GroupFlows

COLUMNS = ("edit flow", "target flow", "difference")


def _to_size(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample a (2, H, W) pixel flow to `size`, scaling the vectors with the image."""
    if tuple(flow.shape[-2:]) == size:
        return flow
    scale = torch.tensor([size[1] / flow.shape[-1], size[0] / flow.shape[-2]], device=flow.device).view(2, 1, 1)
    return F.interpolate(flow[None], size=size, mode="bilinear", align_corners=False)[0] * scale


def flow_picture(flows: GroupFlows, labels: Sequence[str]) -> Image.Image:
    """An RGB grid (rows: edits; columns: COLUMNS) with a caption over each row."""
    from torchvision.utils import flow_to_image, make_grid

    size = (int(flows.edits[0].shape[-2]), int(flows.edits[0].shape[-1]))
    panels = []
    for edit, target in zip(flows.edits, flows.target, strict=True):
        edit, target = _to_size(edit.float().cpu(), size), _to_size(target.float().cpu(), size)
        panels += [edit, target, edit - target]
    images = flow_to_image(torch.stack(panels))  # uint8 (3K, 3, H, W), one shared scale
    grid = make_grid(images, nrow=len(COLUMNS), padding=18, pad_value=255)
    picture = Image.fromarray(grid.permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(picture)
    for row, label in enumerate(labels):
        for col, name in enumerate(COLUMNS):
            draw.text((20 + col * (size[1] + 18), 3 + row * (size[0] + 18)), f"{label}: {name}", fill=(0, 0, 0))
    return picture


def save_flow_picture(path: Path, flows: GroupFlows, labels: Sequence[str]) -> None:
    """Write `flow_picture` to `path` (PNG)."""
    flow_picture(flows, labels).save(path, format="PNG")

"""The demo's pictures and its preservation measure: rows chosen before training, the animation, the flows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from motionnft.data.synth import generate_pair
from trainer.demo_pictures import MAX_PSNR, demo_rows, save_animation, save_flow_grid, scene_psnr
from trainer.grid import save_grid


def test_rows_take_each_category_in_turn_by_id() -> None:
    items = [{"id": f"p{i:02d}", "category": ["pose", "locomotion", "orientation"][i % 3]} for i in range(12)][::-1]
    assert demo_rows(items, 5) == ["p01", "p02", "p00", "p04", "p05"]  # locomotion, orientation, pose, ...
    assert demo_rows(items[:2], 8) == ["p10", "p11"]  # fewer pairs than rows: all of them


def test_scene_psnr_is_capped_for_a_copy_and_falls_as_the_scene_changes() -> None:
    pair = generate_pair(0, 1, 64)  # locomotion: a shape moves over a textured background
    source, target = pair.input_image, pair.target_image
    assert scene_psnr(source, target, target) == MAX_PSNR
    assert scene_psnr(source, target, source) == MAX_PSNR  # the mask leaves the shapes out
    shifted = np.clip(source.astype(int) + 10, 0, 255).astype(np.uint8)
    assert scene_psnr(source, target, shifted) == pytest.approx(10 * np.log10(255**2 / 100), abs=0.1)  # 28.1 dB
    flat = np.full_like(source, int(source.mean()))
    blurred = np.asarray(Image.fromarray(source).resize((16, 16)).resize((64, 64), Image.Resampling.BILINEAR))
    assert scene_psnr(source, target, flat) < scene_psnr(source, target, blurred) < MAX_PSNR
    moved_everywhere = generate_pair(0, 1, 64)
    assert np.isnan(scene_psnr(source, 255 - source, moved_everywhere.input_image))


def write_evaluations(run_dir: Path, n: int = 5) -> list[str]:
    pairs = [generate_pair(0, i, 32) for i in range(n)]
    ids = [p.id for p in pairs]
    inputs, targets = np.stack([p.input_image for p in pairs]), np.stack([p.target_image for p in pairs])
    np.savez(run_dir / "eval-00000.npz", ids=np.array(ids), inputs=inputs, targets=targets, edits=inputs)
    np.savez(run_dir / "eval-00010.npz", ids=np.array(ids), inputs=inputs, targets=targets, edits=targets)
    return ids


def test_animation_and_flows_of_the_chosen_rows(tmp_path: Path) -> None:
    ids = write_evaluations(tmp_path)
    chosen = [ids[3], ids[1], ids[0]]
    with Image.open(save_animation(tmp_path, chosen, rows=2, scale=2)) as gif:
        assert gif.n_frames == 4 and gif.width == 2 * (64 + 4) + 4
        gif.seek(3)
        last = np.asarray(gif.convert("RGB"))
    target = Image.fromarray(generate_pair(0, 3, 32).target_image).resize((64, 64), Image.Resampling.NEAREST)
    assert np.abs(last[18 : 18 + 64, 4 : 4 + 64].astype(int) - np.asarray(target)).mean() < 8  # after = target
    with Image.open(save_flow_grid(tmp_path, chosen, rows=3, scale=2)) as flows:
        assert flows.size == (4 * (64 + 4) + 4, 16 + 3 * (64 + 4) + 4)
    with Image.open(save_grid(tmp_path, ids=chosen, scale=2)) as grid:
        assert grid.height == 16 + 3 * (64 + 4) + 4

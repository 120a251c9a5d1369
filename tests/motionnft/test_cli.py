"""The `motionnft` command: scoring from files, the flow picture, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from motionnft.cli import app
from tests.motionnft.flow.known_motion import gaussian_bump

runner = CliRunner()


def write_images(tmp_path: Path) -> dict[str, Path]:
    motion = gaussian_bump(amplitude=(6.0, -4.0), size=96, margin=8)
    paths = {name: tmp_path / f"{name}.png" for name in ("source", "target", "static")}
    Image.fromarray(motion.source).save(paths["source"])
    Image.fromarray(motion.target).save(paths["target"])
    Image.fromarray(motion.source).save(paths["static"])
    return paths


def test_score_prints_json_and_draws_flows(tmp_path: Path) -> None:
    paths = write_images(tmp_path)
    picture = tmp_path / "flows.png"
    args = ["score", "--source", str(paths["source"]), "--target", str(paths["target"]),
            "--edit", str(paths["target"]), "--edit", str(paths["static"]), "--flow-image", str(picture)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["flow_backend"] == "opencv-dis-medium"
    exact, static = report["edits"]
    assert exact["reward_continuous"] > static["reward_continuous"]
    assert set(exact["terms"]) == {"vector", "direction", "movement", "distance"}
    with Image.open(picture) as image:  # 2 rows (edits) x 3 columns (edit, target, difference)
        assert image.width > 3 * 96 and image.height > 2 * 96


def test_unreadable_image_is_a_clear_error(tmp_path: Path) -> None:
    paths = write_images(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    args = ["score", "--source", str(paths["source"]), "--target", str(paths["target"]), "--edit", str(broken)]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert "broken.png" in result.output and "not a decodable image" in result.output

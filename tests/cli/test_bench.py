"""`motionnft bench generate` through the command, its renderer a real Ray actor on a local Ray.

One test renders twice through Ray (about 8 s per actor start on 2 cores): a corrupt input image is a
failure (exit 1, failures.jsonl) while the others render; once fixed, a rerun renders only that item.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from motionnft.data.formats import load_dataset
from tests.workers.bench_data import DEMO, SIZE, input_image, mtimes, pixels, write_bench
from workers.policies.factory import TINY_CHECKPOINT

runner = CliRunner()


def generate(bench: Path, out: Path, policy: str = str(DEMO), *extra: str) -> tuple[int, str, str]:
    args = ["bench", "generate", "--bench", str(bench), "--policy", policy, "--name", "demo", "--out", str(out),
            "--size", str(SIZE), "--steps", "2", *extra]  # fmt: skip
    result = runner.invoke(app, args)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first")
def test_a_failed_item_exits_1_and_a_rerun_after_the_fix_renders_only_it(ray_session: None, tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "bench")
    ids = [r.id for r in load_dataset(bench)]
    broken = input_image(bench, ids[1])
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 2])  # a truncated PNG
    folder = tmp_path / "out" / "demo"

    code, stdout, stderr = generate(bench, tmp_path / "out")
    assert code == 1, stderr
    assert stderr.splitlines()[-1] == f"error: 1 of 3 items failed; see {folder / 'failures.jsonl'}"
    assert f"{folder}: 2 rendered, 0 kept, 1 failed of 3" in stdout
    (failure,) = [json.loads(line) for line in (folder / "failures.jsonl").read_text().splitlines()]
    assert failure["item"] == ids[1] and str(broken) in failure["error"]
    assert sorted(p.stem for p in folder.glob("*.png")) == sorted([ids[0], ids[2]])
    assert all(pixels(p).shape == (SIZE, SIZE, 3) for p in folder.glob("*.png"))

    before = mtimes(folder)
    broken.write_bytes(good)
    code, stdout, stderr = generate(bench, tmp_path / "out")
    assert code == 0, stderr
    assert f"{folder}: 1 rendered, 2 kept, 0 failed of 3" in stdout
    assert not (folder / "failures.jsonl").exists()
    after = mtimes(folder)
    assert after.keys() == {f"{i}.png" for i in ids} and all(after[name] == t for name, t in before.items())


def test_a_bad_spec_is_one_line_with_exit_2(tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "bench", 1)
    code, _, stderr = generate(bench, tmp_path / "out", str(tmp_path / "nothing-here"))
    assert code == 2
    assert stderr.splitlines() == [
        f"error: Invalid value for '--policy': '{tmp_path / 'nothing-here'}' does not exist (a SPEC is a run "
        "directory (config.yaml and checkpoint-*.pt) or a checkpoint-*.pt file; a config preset (.yaml); a "
        "diffusers directory (model_index.json))"
    ]
    assert not (tmp_path / "out").exists()  # nothing made before the SPEC was understood


def test_bad_names_and_benches_are_usage_errors(tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "bench", 1)
    code, _, stderr = generate(bench, tmp_path / "out", str(DEMO), "--name", "../up")
    assert (code, stderr.splitlines()) == (2, ["error: Invalid value for '--name': '../up' is not a plain folder name"])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, stderr = generate(empty, tmp_path / "out")
    assert (code, stderr.splitlines()) == (2, ["error: the bench has no items"])


@pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first")
def test_a_renderer_that_cannot_load_its_model_stops_the_run_in_one_line(ray_session: None, tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "bench", 1)
    code, _, stderr = generate(bench, tmp_path / "out", str(DEMO), "--size", "36")  # not a multiple of 8
    assert code == 1
    assert stderr.splitlines() == [
        f"error: cannot load {DEMO} (preset): ValueError: size 36 must be a multiple of 8 (VAE factor x 2x2 packing)"
    ]
    assert not (tmp_path / "out" / "demo" / "failures.jsonl").exists()  # not an item's failure

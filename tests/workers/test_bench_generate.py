"""`generate_bench` in this process on the tiny policies: one PNG per item, resumable, fixed seeds, failures.

The Ray renderers run in tests/cli/test_bench.py (an actor start costs about 8 s on 2 cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from motionnft.data.formats import load_dataset
from tests.workers.bench_data import DEMO, DEMO_QWEN, SIZE, input_image, mtimes, pixels, write_bench
from trainer.bench_sources import resolve_source
from workers.bench_generate import CHUNK, BenchReadError, check_ids, generate_bench, renderer_plan
from workers.bench_output import FAILURES, GENERATION, BenchOutput, OutputError
from workers.bench_tasks import item_seed
from workers.policies.factory import TINY_CHECKPOINT, TINY_QWEN_CHECKPOINT

pytestmark = pytest.mark.skipif(
    not (TINY_CHECKPOINT.exists() and TINY_QWEN_CHECKPOINT.exists()), reason="run `motionnft pretrain-tiny` first"
)


@pytest.mark.parametrize(("preset", "family"), [(DEMO, "flux_kontext"), (DEMO_QWEN, "qwen_image_edit")])
def test_a_preset_renders_every_item_once_with_fixed_seeds(preset: Path, family: str, tmp_path: Path) -> None:
    records = load_dataset(write_bench(tmp_path / "bench"))
    source = resolve_source(str(preset), size=SIZE, steps=2)
    folder = tmp_path / "out" / "demo"
    first = generate_bench(records, source, folder, use_ray=False, progress=False)
    assert (first.rendered, first.kept, first.failed) == (3, 0, [])
    assert sorted(p.stem for p in folder.glob("*.png")) == sorted(r.id for r in records)
    assert all(pixels(p).shape == (SIZE, SIZE, 3) for p in folder.glob("*.png"))
    record = json.loads((folder / GENERATION).read_text())
    assert (record["kind"], record["family"], record["steps"], record["seed"], record["size"]) == (
        "preset", family, 2, 0, SIZE)  # fmt: skip
    assert "torch" in record["versions"] and "diffusers" in record["versions"]

    before = mtimes(folder)
    again = generate_bench(records, source, folder, use_ray=False, progress=False)
    assert (again.rendered, again.kept) == (0, 3) and mtimes(folder) == before  # nothing rendered again

    lost = folder / f"{records[1].id}.png"
    kept = pixels(lost)
    lost.unlink()
    third = generate_bench(records, source, folder, use_ray=False, progress=False)
    assert (third.rendered, third.kept) == (1, 2)
    np.testing.assert_array_equal(pixels(lost), kept)  # the item's seed is its own: the very same pixels
    assert {k: v for k, v in mtimes(folder).items() if k != lost.name} == {
        k: v for k, v in before.items() if k != lost.name
    }


def test_an_item_renders_the_same_in_any_subset_and_order_and_differs_by_seed(tmp_path: Path) -> None:
    records = load_dataset(write_bench(tmp_path / "bench"))
    source = resolve_source(str(DEMO), size=SIZE, steps=2)
    whole, alone, other = tmp_path / "whole", tmp_path / "alone", tmp_path / "other"
    generate_bench(records[::-1], source, whole, use_ray=False, progress=False)
    generate_bench(records[2:], source, alone, limit=1, use_ray=False, progress=False)
    generate_bench(records[2:], source, other, seed=1, use_ray=False, progress=False)
    name = f"{records[2].id}.png"
    assert [p.name for p in alone.glob("*.png")] == [name]
    np.testing.assert_array_equal(pixels(alone / name), pixels(whole / name))
    assert not np.array_equal(pixels(other / name), pixels(whole / name))
    assert item_seed(0, "a") == item_seed(0, "a") != item_seed(0, "b") != item_seed(1, "b")
    assert 0 <= item_seed(0, "a") < 2**63


def test_a_bad_input_image_is_a_failure_and_a_rerun_after_the_fix_clears_it(tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "bench")
    records = load_dataset(bench)
    broken = input_image(bench, records[0].id)
    good = broken.read_bytes()
    broken.write_bytes(b"not a png")
    source = resolve_source(str(DEMO), size=SIZE, steps=2)
    folder = tmp_path / "out" / "demo"
    summary = generate_bench(records, source, folder, use_ray=False, progress=False)
    assert (summary.rendered, [f.item for f in summary.failed]) == (2, [records[0].id])
    (line,) = (folder / FAILURES).read_text().splitlines()
    failure = json.loads(line)
    assert failure["item"] == records[0].id and "input image" in failure["error"] and failure["time"]
    assert not (folder / f"{records[0].id}.png").exists()

    again = generate_bench(records, source, folder, limit=1, use_ray=False, progress=False)
    assert len(again.failed) == 1 and len((folder / FAILURES).read_text().splitlines()) == 1  # still one line

    broken.write_bytes(good)
    fixed = generate_bench(records, source, folder, use_ray=False, progress=False)
    assert (fixed.rendered, fixed.kept, fixed.failed) == (1, 2, [])
    assert not (folder / FAILURES).exists()  # nothing fails any more


def test_an_earlier_failure_outside_this_run_is_kept(tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "bench")
    records = load_dataset(bench)
    input_image(bench, records[2].id).write_bytes(b"")
    source = resolve_source(str(DEMO), size=SIZE, steps=2)
    folder = tmp_path / "out"
    generate_bench(records, source, folder, use_ray=False, progress=False)
    generate_bench(records, source, folder, limit=2, use_ray=False, progress=False)  # item 2 not retried
    assert [json.loads(line)["item"] for line in (folder / FAILURES).read_text().splitlines()] == [records[2].id]


def test_a_folder_rendered_with_other_settings_is_refused(tmp_path: Path) -> None:
    output = BenchOutput(tmp_path / "demo")
    output.claim(resolve_source(str(DEMO), size=SIZE, steps=2), seed=0)
    output.claim(resolve_source(f"{DEMO.parent}/../configs/{DEMO.name}", size=SIZE, steps=2), seed=0)  # same
    with pytest.raises(OutputError, match=r"steps 2 \(now 3\)"):
        output.claim(resolve_source(str(DEMO), size=SIZE, steps=3), seed=0)
    with pytest.raises(OutputError, match=r"seed 0 \(now 5\)"):
        output.claim(resolve_source(str(DEMO), size=SIZE, steps=2), seed=5)


def test_pngs_are_written_whole_and_a_killed_write_is_cleaned_up(tmp_path: Path) -> None:
    output = BenchOutput(tmp_path / "demo")
    source = resolve_source(str(DEMO), size=SIZE, steps=2)
    output.claim(source, seed=0)
    output.write_png("a", b"\x89PNG...")
    assert [p.name for p in output.folder.iterdir() if p.name != GENERATION] == ["a.png"]  # no temporary left
    (output.folder / ".b.png.partial").write_bytes(b"\x89P")  # a run killed mid-write
    output.claim(source, seed=0)
    assert not output.has("b") and not (output.folder / ".b.png.partial").exists()


def test_ids_must_name_files(tmp_path: Path) -> None:
    records = load_dataset(write_bench(tmp_path / "bench", 2))
    check_ids(records)
    with pytest.raises(BenchReadError, match="repeats"):
        check_ids([records[0], records[0]])
    for bad in ("../up", "a/b", ".hidden", ""):
        with pytest.raises(BenchReadError, match="cannot name an output file"):
            check_ids([type(records[0])(bad, "p", None, Path("x"), Path("y"))])
    with pytest.raises(BenchReadError, match="no items"):
        check_ids([])


def test_one_renderer_per_gpu_and_one_cpu_renderer_without() -> None:
    assert renderer_plan(0, 100) == (1, {"num_cpus": 1, "num_gpus": 0}, "cpu")
    assert renderer_plan(8, 100) == (8, {"num_cpus": 1, "num_gpus": 1}, "cuda")
    assert renderer_plan(8, CHUNK + 1)[0] == 2  # no more actors than chunks to deal

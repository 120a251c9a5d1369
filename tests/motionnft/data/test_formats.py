"""jsonl and parquet manifests: round trips, dispatch, and errors that name the line, row or column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from motionnft.contracts.images import encode_image_bytes
from motionnft.data.formats import DatasetFormatError, load_dataset, load_jsonl, load_parquet
from motionnft.data.records import AS_IS
from motionnft.data.synth import generate
from motionnft.data.synth_io import load_true_flow, write_dataset


def test_jsonl_round_trip_through_write_dataset(tmp_path: Path) -> None:
    pairs = generate(8, seed=3)
    manifest = write_dataset(pairs, tmp_path / "set")
    records = load_jsonl(manifest)
    assert [r.id for r in records] == [p.id for p in pairs]
    for record, pair in zip(records, pairs, strict=True):
        assert (record.prompt, record.category) == (pair.prompt, pair.category)
        sample = record.load(AS_IS)
        assert np.array_equal(sample.input_image, pair.input_image)
        assert np.array_equal(sample.target_image, pair.target_image)
        assert np.array_equal(load_true_flow(record), pair.flow)
    assert load_dataset(tmp_path / "set") == records  # a folder with one manifest


def test_reference_jsonl_without_id_or_category(tmp_path: Path) -> None:
    lines = [{"prompt": "Raise the arm", "image": ["a.png", "sub/b.png"]}, {"prompt": "Turn", "image": ["c", "d"]}]
    path = tmp_path / "train_metadata.jsonl"
    path.write_text(json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n")
    first, second = load_jsonl(path)
    assert (first.id, first.category, first.input_ref, first.target_ref) == (
        "train_metadata-1",
        None,
        tmp_path / "a.png",
        tmp_path / "sub" / "b.png",
    )
    assert second.id == "train_metadata-3" and second.origin == f"{path}:3"  # line numbers count blank lines


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "x", "image": ["a", "b"]', "malformed JSON"),
        ('["a", "b"]', "expected a JSON object"),
        ('{"image": ["a", "b"]}', 'missing "prompt"'),
        ('{"prompt": "x", "image": ["a"]}', '"image" must be a list of two paths'),
        ('{"prompt": 3, "image": ["a", "b"]}', '"prompt" has the wrong type'),
    ],
)
def test_a_bad_jsonl_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"prompt": "fine", "image": ["a", "b"]}\n' + line + "\n")
    with pytest.raises(DatasetFormatError, match=rf"m\.jsonl:2: {message}"):
        load_jsonl(path)


def test_missing_files_and_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        load_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DatasetFormatError, match="unknown dataset format"):
        load_dataset(tmp_path / "x.csv")
    (tmp_path / "a.jsonl").write_text("")
    (tmp_path / "b.jsonl").write_text("")
    with pytest.raises(DatasetFormatError, match="several jsonl"):
        load_dataset(tmp_path)


def write_parquet(path: Path, columns: dict[str, list[Any]]) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table(columns), path)


def test_parquet_round_trip_with_bytes_and_hf_image_structs(tmp_path: Path) -> None:
    pairs = generate(4, seed=5)
    inputs = [encode_image_bytes(p.input_image) for p in pairs]
    targets = [encode_image_bytes(p.target_image) for p in pairs]
    folder = tmp_path / "hf"
    folder.mkdir()
    # Part 0: plain bytes columns. Part 1: HF's Image feature, one embedded, one by (relative) path.
    write_parquet(
        folder / "train-00000.parquet",
        {"id": [p.id for p in pairs[:2]], "prompt": [p.prompt for p in pairs[:2]],
         "input_image": inputs[:2], "target_image": targets[:2], "category": [p.category for p in pairs[:2]]},
    )  # fmt: skip
    (folder / "t3.png").write_bytes(targets[3])
    write_parquet(
        folder / "train-00001.parquet",
        {"id": [p.id for p in pairs[2:]], "prompt": [p.prompt for p in pairs[2:]],
         "input_image": [{"bytes": b, "path": None} for b in inputs[2:]],
         "target_image": [{"bytes": targets[2], "path": "x.png"}, {"bytes": None, "path": "t3.png"}]},
    )  # fmt: skip
    records = load_dataset(folder)
    assert [r.id for r in records] == [p.id for p in pairs]
    assert [r.category for r in records] == [pairs[0].category, pairs[1].category, None, None]
    assert records[3].target_ref == folder / "t3.png"
    for record, pair in zip(records, pairs, strict=True):
        sample = record.load(AS_IS)
        assert record.prompt == pair.prompt
        assert np.array_equal(sample.input_image, pair.input_image)
        assert np.array_equal(sample.target_image, pair.target_image)


def test_parquet_without_id_gets_default_ids_and_missing_columns_are_named(tmp_path: Path) -> None:
    image = encode_image_bytes(np.zeros((16, 16, 3), dtype=np.uint8))
    write_parquet(
        tmp_path / "bench.parquet", {"prompt": ["a", "b"], "input_image": [image] * 2, "target_image": [image] * 2}
    )
    assert [r.id for r in load_parquet(tmp_path / "bench.parquet")] == ["bench-0", "bench-1"]
    write_parquet(tmp_path / "bad.parquet", {"id": ["a"], "prompt": ["a"], "input_image": [image]})
    with pytest.raises(DatasetFormatError, match=r"bad\.parquet: missing column\(s\) target_image"):
        load_parquet(tmp_path / "bad.parquet")
    write_parquet(tmp_path / "null.parquet", {"prompt": ["a"], "input_image": [None], "target_image": [image]})
    with pytest.raises(DatasetFormatError, match=r"null\.parquet#0 input_image"):
        load_parquet(tmp_path / "null.parquet")

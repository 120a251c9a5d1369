"""validate / require_valid name each bad row: missing file, unreadable image, blank prompt, duplicate id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from motionnft.contracts.images import encode_image_bytes
from motionnft.data.records import EditRecord, Preprocess
from motionnft.data.validation import RecordProblem, ValidationError, require_valid, validate


def dataset(tmp_path: Path) -> list[EditRecord]:
    good = tmp_path / "good.png"
    good.write_bytes(encode_image_bytes(np.full((32, 32, 3), 128, dtype=np.uint8)))
    (tmp_path / "junk.png").write_bytes(b"\x89PNG but not really")
    (tmp_path / "tiny.png").write_bytes(encode_image_bytes(np.zeros((4, 4, 3), dtype=np.uint8)))
    return [
        EditRecord("ok-0", "Move it", "locomotion", good, good),
        EditRecord("gone", "Move it", None, good, tmp_path / "missing.png"),
        EditRecord("junk", "Move it", None, tmp_path / "junk.png", good),
        EditRecord("blank", "   ", None, good, good),
        EditRecord("ok-0", "Move it", None, good, good),
        EditRecord("tiny", "Move it", None, good, tmp_path / "tiny.png"),
        EditRecord("bytes", "Move it", None, b"", good.read_bytes()),
        EditRecord("ok-1", "Move it", None, good.read_bytes(), good),
    ]


def test_each_bad_row_is_named_with_its_index(tmp_path: Path) -> None:
    problems = validate(dataset(tmp_path))
    found = {(p.index, p.id): p.problem for p in problems}
    assert sorted(found) == [(1, "gone"), (2, "junk"), (3, "blank"), (4, "ok-0"), (5, "tiny"), (6, "bytes")]
    assert found[(1, "gone")].startswith("target image file not found") and "missing.png" in found[(1, "gone")]
    assert found[(2, "junk")].startswith("input image unreadable: not a decodable image")
    assert found[(3, "blank")] == "blank prompt"
    assert found[(4, "ok-0")] == "duplicate id (first used by row 0)"
    assert "at least 16 pixels" in found[(5, "tiny")]  # the services' codec limits apply
    assert "empty" in found[(6, "bytes")]


def test_without_decoding_only_existence_is_checked(tmp_path: Path) -> None:
    problems = validate(dataset(tmp_path), decode=False)
    assert sorted((p.index, p.id) for p in problems) == [(1, "gone"), (3, "blank"), (4, "ok-0"), (6, "bytes")]


def test_a_clean_dataset_passes_with_preprocessing(tmp_path: Path) -> None:
    everything = dataset(tmp_path)
    records = [everything[0], everything[-1]]
    assert validate(records, preprocess=Preprocess(size=24)) == []
    require_valid(records)


def test_require_valid_lists_a_few_problems_and_the_count(tmp_path: Path) -> None:
    records = dataset(tmp_path)
    with pytest.raises(ValidationError) as caught:
        require_valid(records, max_listed=2)
    message = str(caught.value)
    assert message.splitlines()[0] == "6 problem(s) in 6 of 8 record(s):"
    assert message.splitlines()[1] == "  row 1 (gone): " + caught.value.problems[0].problem
    assert message.splitlines()[-1] == "  ... and 4 more" and len(message.splitlines()) == 4
    assert all(isinstance(p, RecordProblem) for p in caught.value.problems)

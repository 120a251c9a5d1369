"""Preprocess: center crop, bicubic resize, black bars; EditRecord.load from paths and bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from motionnft.contracts.images import encode_image_bytes
from motionnft.data.records import AS_IS, EditRecord, Preprocess, RecordError, black_bar_box


def quadrants(height: int, width: int, top: int, left: int, side: int) -> np.ndarray:
    """A (height, width, 3) image whose central square [top:top+side, left:left+side] is split into four
    flat quadrants (red, green, blue, white) and whose outside is black: a crop shows where it was taken."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    half = side // 2
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    for k, (dy, dx) in enumerate([(0, 0), (0, half), (half, 0), (half, half)]):
        image[top + dy : top + dy + half, left + dx : left + dx + half] = colours[k]
    return image


def test_center_crop_of_a_wide_image_is_centred_and_resized() -> None:
    image = quadrants(80, 120, top=0, left=20, side=80)  # the centred square of an 80x120 image
    out, _ = Preprocess(size=40).apply_pair(image, image)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    # Nothing of the black margins survived, and each quadrant kept its colour at its corner.
    assert out.reshape(-1, 3).astype(int).sum(axis=1).min() >= 200
    assert out[5, 5].tolist() == [255, 0, 0] and out[5, 34].tolist() == [0, 255, 0]
    assert out[34, 5].tolist() == [0, 0, 255] and out[34, 34].tolist() == [255, 255, 255]


def test_center_crop_of_a_tall_image_without_resizing() -> None:
    image = quadrants(100, 60, top=20, left=0, side=60)
    out, _ = Preprocess(size=None).apply_pair(image, image)
    assert out.shape == (60, 60, 3)
    assert np.array_equal(out, image[20:80])


def test_as_is_keeps_the_input_and_brings_the_target_to_its_size() -> None:
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    second = rng.integers(0, 256, (60, 100, 3), dtype=np.uint8)
    out_first, out_second = AS_IS.apply_pair(first, second)
    assert out_first is first and out_second.shape == (30, 50, 3)


def test_black_bars_are_cropped_with_the_targets_box_from_both() -> None:
    rng = np.random.default_rng(1)
    target = np.zeros((64, 96, 3), dtype=np.uint8)
    target[8:56, :] = rng.integers(40, 256, (48, 96, 3), dtype=np.uint8)  # letterboxed: bars top and bottom
    source = rng.integers(40, 256, (64, 96, 3), dtype=np.uint8)
    assert black_bar_box(target) == (8, 56, 0, 96)
    out_source, out_target = Preprocess(size=None, center_crop=False, crop_black_bars=True).apply_pair(source, target)
    assert np.array_equal(out_source, source[8:56]) and np.array_equal(out_target, target[8:56])


def test_preprocess_refuses_a_bad_size() -> None:
    with pytest.raises(ValueError, match="size"):
        Preprocess(size=0)


def test_record_loads_from_a_path_and_from_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "input.png"
    path.write_bytes(encode_image_bytes(pixels))
    record = EditRecord("a", "Move it", None, path, encode_image_bytes(pixels))
    sample = record.load(AS_IS)
    assert np.array_equal(sample.input_image, pixels) and np.array_equal(sample.target_image, pixels)
    assert record.load(Preprocess(size=32)).input_image.shape == (32, 32, 3)
    assert "<" in repr(record) and "bytes>" in repr(record)  # no megabytes of bytes in a repr


def test_record_load_names_the_record_and_the_image(tmp_path: Path) -> None:
    record = EditRecord("r7", "Move it", None, tmp_path / "gone.png", b"not an image")
    with pytest.raises(RecordError, match=r"record 'r7' input image: file not found"):
        record.load()
    record = EditRecord("r8", "Move it", None, b"not an image", b"not an image")
    with pytest.raises(RecordError, match=r"record 'r8' input image: not a decodable image"):
        record.load()

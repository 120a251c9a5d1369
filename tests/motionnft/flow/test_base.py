"""ImageBatch conventions: conversions both ways and the errors for everything else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionnft.flow import check_image_pair, image_batch_size, to_float_chw, to_uint8_hwc


def random_uint8_batch(batch: int = 2, height: int = 5, width: int = 7, seed: int = 0) -> np.ndarray:
    """uint8 ``(B, H, W, 3)`` random pixels."""
    return np.random.default_rng(seed).integers(0, 256, size=(batch, height, width, 3), dtype=np.uint8)


def test_uint8_numpy_becomes_float_chw_in_unit_range() -> None:
    pixels = random_uint8_batch()
    images = to_float_chw(pixels)
    assert images.shape == (2, 3, 5, 7)
    assert images.dtype == torch.float32
    assert images.device == torch.device("cpu")
    # Channel c of pixel (y, x) is the same number, divided by 255.
    assert torch.equal(images[1, 2, 4, 6], torch.tensor(pixels[1, 4, 6, 2] / 255.0, dtype=torch.float32))
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


def test_uint8_tensor_and_numpy_agree() -> None:
    pixels = random_uint8_batch()
    assert torch.equal(to_float_chw(pixels), to_float_chw(torch.from_numpy(pixels)))
    assert np.array_equal(to_uint8_hwc(torch.from_numpy(pixels)), pixels)


def test_uint8_float_round_trip_is_exact() -> None:
    pixels = random_uint8_batch(batch=3, height=17, width=11)
    back = to_uint8_hwc(to_float_chw(pixels))
    assert back.dtype == np.uint8
    assert back.flags.c_contiguous
    assert np.array_equal(back, pixels)


def test_float_input_passes_through_with_float32_values() -> None:
    images = torch.rand(2, 3, 4, 6, dtype=torch.float64)
    converted = to_float_chw(images)
    assert converted.dtype == torch.float32
    assert torch.allclose(converted, images.float())


def test_float_chw_rounds_to_nearest_uint8() -> None:
    images = torch.full((1, 3, 2, 2), 0.5)
    assert np.all(to_uint8_hwc(images) == 128)  # 127.5 rounds half to even -> 128


def test_image_batch_size_reports_batch_height_width() -> None:
    assert image_batch_size(random_uint8_batch(4, 9, 13)) == (4, 9, 13)
    assert image_batch_size(torch.rand(4, 3, 9, 13)) == (4, 9, 13)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (np.zeros((2, 5, 7, 3), dtype=np.float32), "uint8"),  # float numpy: not a known convention
        (torch.zeros(2, 5, 7, 3, dtype=torch.int64), "uint8"),
        (np.zeros((2, 3, 5, 7), dtype=np.uint8), r"channels-last RGB \(B, H, W, 3\)"),
        (np.zeros((5, 7, 3), dtype=np.uint8), "add a batch dimension"),
        (np.zeros((2, 5, 7), dtype=np.uint8), "channels-last"),
        (torch.zeros(2, 5, 7, 3), r"channels-first RGB \(B, 3, H, W\)"),
        (torch.zeros(3, 5, 7), "channels-first"),
        (np.zeros((0, 5, 7, 3), dtype=np.uint8), "at least one image"),
        (torch.zeros(2, 3, 0, 7), "at least one image"),
    ],
)
def test_malformed_batches_are_refused(batch: np.ndarray | torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_batch_size(batch)
    with pytest.raises(ValueError, match=message):
        to_float_chw(batch)
    with pytest.raises(ValueError, match=message):
        to_uint8_hwc(batch)


@pytest.mark.parametrize("bad_value", [255.0, -0.5, float("nan"), float("inf")])
def test_floating_values_outside_unit_range_are_refused(bad_value: float) -> None:
    images = torch.rand(1, 3, 4, 4)
    images[0, 1, 2, 3] = bad_value
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        to_float_chw(images)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        to_uint8_hwc(images)


def test_non_array_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        image_batch_size([[1, 2, 3]])  # type: ignore[arg-type]


def test_pair_may_mix_conventions_but_not_sizes() -> None:
    pixels = random_uint8_batch(2, 5, 7)
    assert check_image_pair(pixels, torch.rand(2, 3, 5, 7)) == (2, 5, 7)
    with pytest.raises(ValueError, match="same"):
        check_image_pair(pixels, random_uint8_batch(3, 5, 7))
    with pytest.raises(ValueError, match=r"same \(B, H, W\).*\(2, 5, 7\).*\(2, 7, 5\)"):
        check_image_pair(pixels, random_uint8_batch(2, 7, 5))

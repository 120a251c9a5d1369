"""The wire codec: high bit depth, header-only sizes, and the limits checked before decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from motionnft.contracts.images import ImageError, ImageLimits, decode_image_bytes, image_size


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_16_bit_greyscale_is_scaled_to_8_bits_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    decoded = decode_image_bytes(png(ramp)).pixels
    assert decoded.shape == (64, 64, 3) and decoded.dtype == np.uint8
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert np.array_equal(decoded[:, :, 0], expected) and np.array_equal(decoded[:, :, 2], expected)
    assert 120 < decoded.mean() < 135  # was 254.5: everything above 255 clipped to white


def test_16_bit_equals_the_same_picture_at_8_bits() -> None:
    eight = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    sixteen = eight.astype(np.uint16) * 257
    assert np.array_equal(decode_image_bytes(png(sixteen)).pixels, decode_image_bytes(png(eight)).pixels)


def test_size_comes_from_the_header_and_obeys_the_limits() -> None:
    raw = png(np.zeros((40, 30), dtype=np.uint8))
    assert image_size(raw) == (30, 40)
    with pytest.raises(ImageError, match="over the limit"):
        image_size(raw, ImageLimits(max_pixels=1000))
    with pytest.raises(ImageError, match="not a decodable image"):
        image_size(b"not an image at all")

"""The known-motion fixtures are themselves right: target(p + f(p)) = source(p), checked without any
flow estimator, so a sign error in the fixtures cannot hide a sign error in an estimator."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.motionnft.flow.known_motion import KnownMotion, gaussian_bump, pixel_grid, translation


def photometric_error(motion: KnownMotion, flow: np.ndarray) -> float:
    """Mean |target(p + flow(p)) - source(p)| in gray levels over the valid region (bilinear sampling)."""
    xs, ys = pixel_grid(*motion.source.shape[:2])
    sampled = cv2.remap(motion.target, xs + flow[0], ys + flow[1], interpolation=cv2.INTER_LINEAR)
    difference = np.abs(sampled.astype(np.float32) - motion.source.astype(np.float32))
    return float(difference[motion.valid].mean())


def test_integer_translation_is_an_exact_shift() -> None:
    motion = translation(3, -2, size=64)
    # source(x, y) == target(x + 3, y - 2) wherever both exist.
    assert np.array_equal(motion.source[2:, :-3], motion.target[:-2, 3:])
    assert motion.flow.shape == (2, 64, 64)
    assert np.all(motion.flow[0] == 3) and np.all(motion.flow[1] == -2)


@pytest.mark.parametrize(
    "motion",
    [translation(2.5, -1.25, size=128), gaussian_bump((4.0, -3.0), size=128)],
    ids=["subpixel-translation", "gaussian-bump"],
)
def test_true_flow_maps_source_onto_target(motion: KnownMotion) -> None:
    right = photometric_error(motion, motion.flow)
    standing_still = photometric_error(motion, np.zeros_like(motion.flow))
    wrong_sign = photometric_error(motion, -motion.flow)
    swapped_axes = photometric_error(motion, motion.flow[::-1])
    # What is left with the true flow is resampling error (bicubic warp, bilinear check): measured
    # 2.0-5.0 gray levels against 11-33 for no flow and 17-45 for a wrong sign or swapped axes.
    assert right < 0.25 * standing_still
    assert wrong_sign > 5 * right and swapped_axes > 5 * right


def test_gaussian_bump_moves_the_middle_and_not_the_border() -> None:
    motion = gaussian_bump((4.0, -3.0), size=128)
    assert np.allclose(motion.flow[:, 64, 64], (4.0, -3.0), atol=0.01)
    assert np.abs(motion.flow[:, 0, :]).max() < 0.2
    border_change = np.abs(motion.target[:4].astype(np.float32) - motion.source[:4].astype(np.float32))
    assert border_change.mean() < 1.0

"""The prefilter's statistics on hand-built frames and flows, and the order of its reasons."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as photos

from motionnft.mining.prefilter import (
    colour_distance,
    cut_distance,
    exposure,
    motion_measures,
    prefilter_reason,
    sharpness,
    split_flow,
)
from motionnft.mining.settings import MiningSettings

H, W = 96, 128


def photo() -> np.ndarray:
    return cv2.resize(photos.coffee(), (W, H), interpolation=cv2.INTER_AREA)


def test_exposure_of_black_white_and_a_photo() -> None:
    assert exposure(np.zeros((H, W, 3), np.uint8)) == (0.0, 1.0)
    assert exposure(np.full((H, W, 3), 255, np.uint8)) == (1.0, 1.0)
    luma, clipped = exposure(np.full((H, W, 3), 128, np.uint8))
    assert luma == pytest.approx(128 / 255) and clipped == 0.0


def test_sharpness_falls_with_blur() -> None:
    sharp = photo()
    assert sharpness(sharp) > MiningSettings().min_sharpness
    assert sharpness(cv2.GaussianBlur(sharp, (0, 0), 3.0)) < MiningSettings().min_sharpness
    assert sharpness(np.full((H, W, 3), 90, np.uint8)) == 0.0


def test_colour_distance_zero_for_the_same_frame_large_for_another_shot() -> None:
    coffee = photo()
    cat = cv2.resize(photos.chelsea(), (W, H), interpolation=cv2.INTER_AREA)
    assert colour_distance(coffee, coffee) == pytest.approx(0.0, abs=1e-6)
    assert colour_distance(coffee, cat) > MiningSettings().max_cut_distance
    # A cut is the largest neighbouring step, wherever it falls.
    assert cut_distance([coffee, coffee, cat, cat]) == pytest.approx(colour_distance(coffee, cat))


def test_split_flow_calls_a_translation_camera_motion() -> None:
    flow = np.zeros((2, H, W), np.float32)
    flow[0] = 3.0  # everything moves 3 px right: a pan
    camera, residual = split_flow(flow)
    np.testing.assert_allclose(camera[0], 3.0, atol=1e-3)
    np.testing.assert_allclose(residual, 0.0, atol=1e-3)


def test_split_flow_leaves_a_moving_subject_in_the_residual() -> None:
    flow = np.zeros((2, H, W), np.float32)
    flow[1, 20:40, 30:60] = -4.0  # a subject moves 4 px up over a still background
    camera, residual = split_flow(flow)
    np.testing.assert_allclose(camera, 0.0, atol=1e-3)
    np.testing.assert_allclose(residual[1, 20:40, 30:60], -4.0, atol=1e-3)


def test_motion_measures_add_up_the_steps() -> None:
    step = np.zeros((2, H, W), np.float32)
    step[0, 24:48, 16:40] = 2.0  # a 24 x 24 subject at the left moves 2 px right per step
    measures = motion_measures([step, step, step], moving_px=1.0)
    assert measures["camera_motion"] == pytest.approx(0.0, abs=1e-4)
    assert measures["moving_share"] == pytest.approx(24 * 24 / (H * W))
    assert (measures["moving_dx"], measures["moving_dy"]) == pytest.approx((6.0, 0.0))
    assert measures["moving_magnitude"] == pytest.approx(6.0 / np.hypot(H, W))
    assert measures["moving_cx"] == pytest.approx(27.5 / (W - 1))
    assert measures["moving_cy"] == pytest.approx(35.5 / (H - 1))
    still = motion_measures([np.zeros((2, H, W), np.float32)], moving_px=1.0)
    assert still["moving_share"] == 0.0 and (still["moving_cx"], still["moving_cy"]) == (0.5, 0.5)


GOOD = {"luma_min": 0.4, "luma_max": 0.5, "clipped": 0.01, "sharpness": 500.0, "cut_distance": 0.05,
        "camera_motion": 0.0, "moving_share": 0.1}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"luma_min": 0.01}, "exposure"),
        ({"luma_max": 0.99}, "exposure"),
        ({"clipped": 0.9}, "exposure"),
        ({"sharpness": 5.0}, "blur"),
        ({"cut_distance": 0.8}, "cut"),
        ({"camera_motion": 0.1}, "camera_motion"),
        ({"moving_share": 0.001}, "no_motion"),
        ({"moving_share": 0.9}, "too_much_motion"),
        # The first failing check names the window: a fade (dark and a big colour step) is exposure.
        ({"luma_min": 0.0, "cut_distance": 0.9, "sharpness": 0.0}, "exposure"),
        ({"camera_motion": 0.1, "moving_share": 0.9}, "camera_motion"),
    ],
)
def test_prefilter_reason(change: dict[str, float], reason: str | None) -> None:
    assert prefilter_reason({**GOOD, **change}, MiningSettings()) == reason


def test_frame_checks_alone_pass_without_flow_measures() -> None:
    frame_only = {k: v for k, v in GOOD.items() if k not in ("camera_motion", "moving_share")}
    assert prefilter_reason(frame_only, MiningSettings()) is None

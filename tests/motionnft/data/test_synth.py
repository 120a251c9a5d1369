"""The synthetic generator: determinism, balance, exact flow, texture, and agreement with DIS flow."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import ndimage

from motionnft.data.synth import CATEGORIES, SynthPair, generate, generate_pair, split
from motionnft.flow import build_flow_estimator

TRANSLATING = ("locomotion", "subject_object", "inter_subject")  # whole-pixel moves only


@pytest.fixture(scope="module")
def pairs() -> list[SynthPair]:
    return generate(120, seed=4)


def test_shapes_types_and_ids(pairs: list[SynthPair]) -> None:
    pair = pairs[0]
    assert pair.input_image.shape == pair.target_image.shape == (64, 64, 3)
    assert pair.input_image.dtype == pair.target_image.dtype == np.uint8
    assert pair.flow.shape == (2, 64, 64) and pair.flow.dtype == np.float32
    assert pair.shape_mask.shape == (64, 64) and pair.shape_mask.dtype == bool
    assert len({p.id for p in pairs}) == len(pairs)
    assert generate(3, seed=1, size=96)[0].flow.shape == (2, 96, 96)


def test_deterministic_for_a_seed_and_different_for_another(pairs: list[SynthPair]) -> None:
    again = generate(30, seed=4)
    for first, second in zip(pairs[:30], again, strict=True):  # also: a prefix of a longer run
        assert (first.id, first.prompt) == (second.id, second.prompt)
        assert np.array_equal(first.input_image, second.input_image)
        assert np.array_equal(first.target_image, second.target_image)
        assert np.array_equal(first.flow, second.flow)
    other = generate(30, seed=5)
    assert not any(np.array_equal(a.input_image, b.input_image) for a, b in zip(again, other, strict=True))


def test_all_six_categories_round_robin_and_prompts(pairs: list[SynthPair]) -> None:
    assert CATEGORIES == ("pose", "locomotion", "object_state", "orientation", "subject_object", "inter_subject")
    assert Counter(p.category for p in pairs) == dict.fromkeys(CATEGORIES, 20)
    assert [p.category for p in pairs[:6]] == list(CATEGORIES)
    starts = {"pose": "Rotate the ", "locomotion": "Move the ", "object_state": "Make the ",
              "subject_object": "Move the ", "inter_subject": "Move "}  # fmt: skip
    for pair in pairs:
        assert pair.prompt.startswith(starts.get(pair.category, ("Flip the ", "Turn the ")))
    assert all(" until it touches the " in p.prompt for p in pairs if p.category == "subject_object")


def test_every_pair_moves_something_visible(pairs: list[SynthPair]) -> None:
    for pair in pairs:
        largest = np.linalg.norm(pair.flow, axis=0).max()
        assert largest >= 2.5, (pair.id, pair.prompt, largest)
        assert np.abs(pair.input_image.astype(int) - pair.target_image.astype(int)).max() > 30


def test_prompts_say_what_the_flow_does(pairs: list[SynthPair]) -> None:
    words = {"to the right": (1, 0), "to the left": (-1, 0), "down": (0, 1), "up": (0, -1)}
    for pair in (p for p in pairs if p.category == "locomotion"):
        moving = np.linalg.norm(pair.flow, axis=0) > 0
        direction = np.sign(pair.flow[:, moving].mean(axis=1)).astype(int)
        assert pair.prompt.endswith(next(w for w, d in words.items() if tuple(direction) == d)), pair.prompt
    for pair in (p for p in pairs if p.category == "inter_subject"):
        ys, xs = np.nonzero(pair.shape_mask)
        labels, _ = ndimage.label(pair.shape_mask)
        centres = [np.array([xs[labels[ys, xs] == k].mean(), ys[labels[ys, xs] == k].mean()]) for k in (1, 2)]
        moves = [pair.flow[:, labels == k].mean(axis=1) for k in (1, 2)]
        before = np.linalg.norm(centres[0] - centres[1])
        after = np.linalg.norm(centres[0] + moves[0] - centres[1] - moves[1])
        assert (after < before) == ("toward" in pair.prompt), pair.prompt


def lands_on(target: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> bool:
    """Whether any of the points (ys, xs) inside the frame falls on a True pixel of ``target``."""
    inside = (ys >= 0) & (ys < target.shape[0]) & (xs >= 0) & (xs < target.shape[1])
    return bool(target[ys[inside], xs[inside]].any())


def test_subject_object_stops_on_touching(pairs: list[SynthPair]) -> None:
    for pair in (p for p in pairs if p.category == "subject_object"):
        moving = np.linalg.norm(pair.flow, axis=0) > 0
        still = pair.shape_mask & ~moving
        ys, xs = np.nonzero(moving)
        to_y, to_x = ys + pair.flow[1, ys, xs].astype(int), xs + pair.flow[0, ys, xs].astype(int)
        step_x, step_y = np.sign(pair.flow[:, ys[0], xs[0]]).astype(int)  # whole pixels along one axis
        assert not lands_on(still, to_y, to_x), pair.prompt  # apart ...
        assert lands_on(still, to_y + step_y, to_x + step_x), pair.prompt  # ... by less than one more step


def test_true_flow_is_exact_for_whole_pixel_moves(pairs: list[SynthPair]) -> None:
    for pair in (p for p in pairs if p.category in TRANSLATING):
        ys, xs = np.nonzero(pair.shape_mask)
        u, v = pair.flow[0, ys, xs], pair.flow[1, ys, xs]
        assert np.array_equal(u, np.round(u)) and np.array_equal(v, np.round(v))
        to_x, to_y = xs + u.astype(int), ys + v.astype(int)
        assert to_x.min() >= 0 and to_y.min() >= 0 and max(to_x.max(), to_y.max()) < 64  # stays in frame
        assert np.array_equal(pair.target_image[to_y, to_x], pair.input_image[ys, xs]), pair.id


def test_flow_is_zero_off_shapes_and_the_background_stays(pairs: list[SynthPair]) -> None:
    for pair in pairs:
        assert not np.any(pair.flow[:, ~pair.shape_mask])
        # Background away from where shapes were and went: exactly as in the input (nothing moved there).
        # A grown shape's forward-mapped pixels are 1.6 px apart and miss sharp tips: hence 3 px of slack.
        ys, xs = np.nonzero(pair.shape_mask)
        landed = np.zeros_like(pair.shape_mask)
        landed[np.clip(np.rint(ys + pair.flow[1, ys, xs]).astype(int), 0, 63),
               np.clip(np.rint(xs + pair.flow[0, ys, xs]).astype(int), 0, 63)] = True  # fmt: skip
        untouched = ~ndimage.binary_dilation(pair.shape_mask | landed, iterations=3)
        assert np.array_equal(pair.input_image[untouched], pair.target_image[untouched]), pair.id


def test_rotations_and_scalings_carry_pixels_where_the_flow_says(pairs: list[SynthPair]) -> None:
    for pair in (p for p in pairs if p.category in ("pose", "object_state", "orientation")):
        inner = ndimage.binary_erosion(pair.shape_mask, iterations=2) & (np.linalg.norm(pair.flow, axis=0) > 0)
        ys, xs = np.nonzero(inner)
        to_y = np.rint(ys + pair.flow[1, ys, xs]).astype(int)
        to_x = np.rint(xs + pair.flow[0, ys, xs]).astype(int)
        moved = np.abs(pair.target_image[to_y, to_x].astype(int) - pair.input_image[ys, xs].astype(int)).mean()
        unmoved = np.abs(pair.target_image[ys, xs].astype(int) - pair.input_image[ys, xs].astype(int)).mean()
        assert moved < 12 and moved < unmoved, (pair.id, pair.prompt, moved, unmoved)


def test_shapes_and_background_are_textured(pairs: list[SynthPair]) -> None:
    for pair in pairs[:24]:
        gray = pair.input_image.astype(np.float64).mean(axis=2)
        local_std = np.sqrt(np.maximum(ndimage.uniform_filter(gray**2, 5) - ndimage.uniform_filter(gray, 5) ** 2, 0))
        shapes = ndimage.binary_erosion(pair.shape_mask, iterations=3)
        background = ~ndimage.binary_dilation(pair.shape_mask, iterations=3)
        assert np.median(local_std[shapes]) > 2.0 and np.median(local_std[background]) > 1.0, pair.id


def test_dis_flow_agrees_in_direction_on_locomotion(pairs: list[SynthPair]) -> None:
    moving = [p for p in pairs if p.category == "locomotion"]
    estimator = build_flow_estimator("dis")
    sources = np.stack([p.input_image for p in moving])
    targets = np.stack([p.target_image for p in moving])
    estimated = estimator.estimate(sources, targets).numpy()
    cosines = []
    for pair, flow in zip(moving, estimated, strict=True):
        mask = np.linalg.norm(pair.flow, axis=0) > 0
        true, found = pair.flow[:, mask], flow[:, mask]
        norms = np.linalg.norm(true, axis=0) * np.linalg.norm(found, axis=0)
        cosines.append(float(((true * found).sum(axis=0) / np.maximum(norms, 1e-6)).mean()))
    assert np.mean(cosines) > 0.8, cosines


def test_split_is_stratified_deterministic_and_disjoint(pairs: list[SynthPair]) -> None:
    train, evaluation = split(pairs, 0.2, seed=9)
    assert Counter(p.category for p in evaluation) == dict.fromkeys(CATEGORIES, 4)
    assert {p.id for p in train} | {p.id for p in evaluation} == {p.id for p in pairs}
    assert not {p.id for p in train} & {p.id for p in evaluation}
    assert [p.id for p in split(pairs, 0.2, seed=9)[1]] == [p.id for p in evaluation]
    assert [p.id for p in split(pairs[::-1], 0.2, seed=9)[1]] == [p.id for p in evaluation][::-1]  # by id
    assert [p.id for p in split(pairs, 0.2, seed=10)[1]] != [p.id for p in evaluation]
    assert split(pairs, 0.0, seed=9) == (list(pairs), [])
    with pytest.raises(ValueError, match="eval_fraction"):
        split(pairs, 1.0, seed=9)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        generate(1, seed=0, size=16)
    with pytest.raises(ValueError, match="non-negative"):
        generate(1, seed=-1)


def test_a_share_of_the_motion_renders_the_same_scene_part_of_the_way() -> None:
    for index in range(12):  # two pairs per category (index 3 is a flip)
        full, again = generate_pair(3, index, 64), generate_pair(3, index, 64, motion=1.0)
        still, half = generate_pair(3, index, 64, motion=0.0), generate_pair(3, index, 64, motion=0.5)
        np.testing.assert_array_equal(again.target_image, full.target_image)
        np.testing.assert_array_equal(still.target_image, full.input_image)  # no motion: the input itself
        np.testing.assert_array_equal(half.input_image, full.input_image)
        assert not np.array_equal(half.target_image, full.target_image)
        if "Flip" not in full.prompt:  # a mirror has no half-way pose: it happens at the full share only
            assert not np.array_equal(half.target_image, full.input_image)

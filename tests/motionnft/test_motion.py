"""Tests of motionnft.motion: an independent numpy reference, hand-computed cases, properties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from motionnft.motion import (
    DirectionTerm,
    MASParams,
    MotionRewardParams,
    VectorTerm,
    motion_alignment,
    motion_alignment_score,
    quantize_reward,
)

EPS, Q = 1e-6, 0.4
FIELDS = ("vector", "direction", "movement", "distance", "reward_continuous", "reward")
VARIANTS = [
    ("component", "mask"),
    ("pixel_l1", "magnitude"),
    ("component", "magnitude"),
    ("pixel_l1", "mask"),
]
FAST = settings(max_examples=40, deadline=None)
Pair = tuple[torch.Tensor, torch.Tensor]


def reference_reward(fe: np.ndarray, fg: np.ndarray, vector_term: str, direction_term: str) -> dict:
    """docs/method.md section 2 in float64 numpy, one item at a time, default constants."""
    out: dict[str, list[float]] = {name: [] for name in FIELDS}
    for edit, target in zip(fe.astype(np.float64), fg.astype(np.float64), strict=True):
        d = math.hypot(edit.shape[1], edit.shape[2])
        p, g = edit / d, target / d
        diff = np.abs(p - g) if vector_term == "component" else np.abs(p - g).sum(axis=0)
        d_vec = np.mean((diff + EPS) ** Q)
        n_p, n_g = np.sqrt((p**2).sum(axis=0)), np.sqrt((g**2).sum(axis=0))
        cos = np.clip((p / np.maximum(n_p, EPS) * g / np.maximum(n_g, EPS)).sum(axis=0), -1, 1)
        err = np.clip(1 - cos, 0, 2) / 2
        if direction_term == "mask":
            mask = n_g > 0.002
            d_dir = (err * mask).sum() / max(mask.sum(), 1)
        else:
            weight = n_g / max(n_g.max(), EPS)
            d_dir = (err * weight).sum() / max(weight.sum(), EPS)
        m_move = max(0.0, 0.01 + 0.5 * n_g.mean() - n_p.mean())
        dist = 0.7 * d_vec + 0.2 * d_dir + 0.1 * m_move
        r = 1 - np.clip((dist - EPS**Q) / (1 - EPS**Q), 0, 1)
        for name, value in zip(FIELDS, (d_vec, d_dir, m_move, dist, r, np.round(5 * r) / 5), strict=True):
            out[name].append(float(value))
    return {name: np.array(values) for name, values in out.items()}


def reference_mas(fe: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """MAS with the module's documented defaults, float64 numpy, one item at a time."""
    scores = []
    for edit, target in zip(fe.astype(np.float64), fg.astype(np.float64), strict=True):
        d = math.hypot(edit.shape[1], edit.shape[2])
        p, g = edit / d, target / d
        d_mag = np.mean((np.abs(p - g) + EPS) ** Q)
        n_p, n_g = np.sqrt((p**2).sum(axis=0)), np.sqrt((g**2).sum(axis=0))
        cos = np.clip((p / np.maximum(n_p, EPS) * g / np.maximum(n_g, EPS)).sum(axis=0), -1, 1)
        weight = n_g / max(n_g.max(), EPS)
        d_dir = (np.clip(1 - cos, 0, 2) / 2 * weight).sum() / max(weight.sum(), EPS)
        d_ovl = 0.5 * d_mag + 0.5 * d_dir
        score = 100 * (1 - np.clip((d_ovl - EPS**Q) / (0.5 - EPS**Q), 0, 1))
        gated = n_g.mean() > EPS and n_p.mean() / n_g.mean() < 0.01
        scores.append(0.0 if gated else score)
    return np.array(scores)


def random_batch(shape: tuple[int, int, int], seed: int) -> Pair:
    """Ten items: zero / small (1e-3 px) / moderate / large (100 px) motion, exact, static, noisy edits."""
    gen = torch.Generator().manual_seed(seed)
    h, w = shape[1], shape[2]
    scales = [0.0, 1e-3, 1.0, 3.0, 10.0, 100.0, 3.0, 3.0, 5.0, 0.5]
    fg = torch.stack([torch.randn(2, h, w, generator=gen) * s for s in scales])
    fe = (
        fg
        + torch.randn(fg.shape, generator=gen)
        * torch.tensor([1.0, 1e-3, 0.5, 2, 5, 50, 0, 0, 30, 0.1])[:, None, None, None]
    )
    fe[7] = 0.0  # a static edit of a moving target
    fe[0] = torch.randn(2, h, w, generator=gen)  # motion where the target has none
    return fe.float(), fg.float()


def on_a_half(r_cont: torch.Tensor, levels: int = 6) -> torch.Tensor:
    """Items whose (levels-1) * r_cont sits within float32 noise of a rounding tie."""
    scaled = r_cont.double() * (levels - 1)
    return (scaled - scaled.floor() - 0.5).abs() < 1e-4


@pytest.mark.parametrize(("vector_term", "direction_term"), VARIANTS)
@pytest.mark.parametrize("shape", [(2, 1, 1), (2, 5, 7), (2, 16, 16), (2, 1, 9), (2, 32, 24)])
def test_matches_numpy_reference(
    shape: tuple[int, int, int], vector_term: VectorTerm, direction_term: DirectionTerm
) -> None:
    fe, fg = random_batch(shape, seed=sum(shape))
    params = MotionRewardParams(vector_term=vector_term, direction_term=direction_term)
    got = motion_alignment(fe, fg, params)
    want = reference_reward(fe.numpy(), fg.numpy(), vector_term, direction_term)
    for name in FIELDS[:-1]:
        np.testing.assert_allclose(getattr(got, name).double().numpy(), want[name], rtol=0, atol=1e-6)
        assert getattr(got, name).dtype == torch.float32
    clear = ~on_a_half(got.reward_continuous).numpy()
    np.testing.assert_allclose(got.reward.numpy()[clear], want["reward"][clear], rtol=0, atol=1e-7)


def test_mas_matches_numpy_reference() -> None:
    for shape in [(2, 5, 7), (2, 16, 16), (2, 32, 24)]:
        fe, fg = random_batch(shape, seed=7 * sum(shape))
        got = motion_alignment_score(fe, fg)
        np.testing.assert_allclose(got.double().numpy(), reference_mas(fe.numpy(), fg.numpy()), atol=1e-4)


def test_quantize_reward_rounds_half_to_even() -> None:
    r = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0])
    # 5r = 0, 0.5, 1, 1.5, 2.5, 3.5, 4.5, 5 -> half to even: 0, 0, 1, 2, 2, 4, 4, 5.
    expected = torch.tensor([0.0, 0.0, 0.2, 0.4, 0.4, 0.8, 0.8, 1.0])
    torch.testing.assert_close(quantize_reward(r, 6), expected, rtol=0, atol=1e-7)
    r64 = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0], dtype=torch.float64)
    torch.testing.assert_close(quantize_reward(r64, 6), expected.to(torch.float64), rtol=0, atol=1e-7)
    # Three levels: 2 * 0.25 = 0.5 -> 0, 2 * 0.75 = 1.5 -> 2.
    assert quantize_reward(torch.tensor([0.25, 0.75]), 3).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError):
        quantize_reward(r, 1)


@pytest.mark.parametrize(("levels", "r_cont", "expected"), [(6, 0.5, 0.4), (5, 0.375, 0.5), (5, 0.875, 1.0)])
def test_exact_ties_end_to_end(levels: int, r_cont: float, expected: float) -> None:
    # Only the hinge counts and D_min = (2^-20)^0.5 = 2^-10, span = d_max - D_min = 1: all exact in
    # binary, so with still flows D = tau = (1 - r_cont) + 2^-10 and r_cont comes out exactly.
    params = MotionRewardParams(
        eps=2.0**-20, q=0.5, vector_weight=0, direction_weight=0, movement_weight=1,
        tau=(1 - r_cont) + 2.0**-10, d_max=1 + 2.0**-10, levels=levels,
    )  # fmt: skip
    zero = torch.zeros(1, 2, 4, 4)
    result = motion_alignment(zero, zero, params)
    assert result.reward_continuous.item() == r_cont
    assert result.reward.item() == pytest.approx(expected, abs=1e-7)


def uniform(h: int, w: int, dx: float, dy: float) -> torch.Tensor:
    return torch.tensor([float(dx), float(dy)]).view(1, 2, 1, 1).expand(1, 2, h, w).clone()


def test_hand_computed_uniform_flows() -> None:
    # 3x4 image: d = 5. Target (3, 4) px -> G = (0.6, 0.8), |G| = 1; edit (0, 5) px -> P = (0, 1).
    fe, fg = uniform(3, 4, 0, 5), uniform(3, 4, 3, 4)
    d_min = EPS**Q  # 10^-2.4 = 0.0039811
    # Component: |P - G| = (0.6, 0.2): D_vec = (0.6^0.4 + 0.2^0.4) / 2 = (0.81519 + 0.52530) / 2 = 0.67025.
    d_vec = ((0.6 + EPS) ** Q + (0.2 + EPS) ** Q) / 2
    # cos = (0, 1).(0.6, 0.8) = 0.8 -> e = 0.1 at every pixel; |G| = 1 > 0.002 everywhere: D_dir = 0.1.
    # M_move = max(0, 0.01 + 0.5 * 1 - 1) = 0.  D = 0.7 * 0.67025 + 0.2 * 0.1 = 0.48918.
    dist = 0.7 * d_vec + 0.2 * 0.1
    r = motion_alignment(fe, fg)
    assert r.terms(0) == pytest.approx({"vector": d_vec, "direction": 0.1, "movement": 0.0, "distance": dist})
    # r_cont = 1 - (0.48918 - 0.00398) / 0.99602 = 0.51287 -> 5r = 2.564 -> 3 -> 0.6.
    assert r.reward_continuous.item() == pytest.approx(1 - (dist - d_min) / (1 - d_min), abs=1e-6)
    assert r.reward.item() == pytest.approx(0.6)
    # Paper vector term: per-pixel L1 = 0.8 -> D_vec = 0.8^0.4 = 0.91461; D = 0.66023 -> r 0.34113 -> 0.4.
    # |G| / max|G| = 1 everywhere, so the magnitude-weighted D_dir is also 0.1.
    paper = motion_alignment(fe, fg, MotionRewardParams(vector_term="pixel_l1", direction_term="magnitude"))
    assert paper.vector.item() == pytest.approx((0.8 + EPS) ** Q, abs=1e-6)
    assert paper.direction.item() == pytest.approx(0.1, abs=1e-6)
    assert paper.reward.item() == pytest.approx(0.4)
    # Static edit: D_vec = (0.6^0.4 + 0.8^0.4) / 2 = 0.86490, u = 0 -> e = 0.5, M_move = 0.01 + 0.5 = 0.51;
    # D = 0.60543 + 0.1 + 0.051 = 0.75643 -> r_cont = 0.24454 -> 5r = 1.22 -> 0.2.
    still = motion_alignment(torch.zeros_like(fg), fg)
    d_vec_still = ((0.6 + EPS) ** Q + (0.8 + EPS) ** Q) / 2
    expected = {
        "vector": d_vec_still,
        "direction": 0.5,
        "movement": 0.51,
        "distance": 0.7 * d_vec_still + 0.151,
    }
    assert still.terms(0) == pytest.approx(expected)
    assert still.reward.item() == pytest.approx(0.2)
    # MAS: D_ovl = 0.5 * 0.67025 + 0.5 * 0.1 = 0.38513 -> 100 * (1 - 0.38115 / 0.49602) = 23.159.
    mas = 100 * (1 - (0.5 * d_vec + 0.05 - d_min) / (0.5 - d_min))
    assert motion_alignment_score(fe, fg).item() == pytest.approx(mas, abs=1e-4)


PIXELS = st.floats(-50, 50, width=32)
# Either still or moving by at least 2^-10 px per pixel: keeps whole fields clear of sub-eps motion,
# where the magnitude-weighted direction term sees "no direction" (e = 0.5) at full weight.
CLEAR = st.one_of(st.just(0.0), st.floats(2.0**-10, 50, width=32), st.floats(-50, -(2.0**-10), width=32))


@st.composite
def flow_pairs(draw: st.DrawFn, elements: st.SearchStrategy[float] = PIXELS) -> Pair:
    shape = (draw(st.integers(1, 3)), 2, draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    edit, target = (draw(arrays(np.float32, shape, elements=elements)) for _ in range(2))
    return torch.from_numpy(edit), torch.from_numpy(target)


@FAST
@given(flow_pairs())
def test_identical_flows_earn_full_reward(pair: Pair) -> None:
    fg = pair[1]
    r = motion_alignment(fg, fg)
    # D - D_min <= 0.1 * tau (the hinge when mean|G| < 0.02) + float noise: r_cont >= 0.999.
    assert (r.reward == 1.0).all()
    assert (r.reward_continuous >= 0.998).all()
    moving = torch.linalg.vector_norm(fg, dim=1).flatten(1).mean(1) / math.hypot(*fg.shape[2:]) >= 0.02
    assert (r.reward_continuous[moving] > 1 - 1e-5).all()


@FAST
@given(flow_pairs(CLEAR))
def test_identical_flows_earn_full_reward_magnitude_variant(pair: Pair) -> None:
    params = MotionRewardParams(vector_term="pixel_l1", direction_term="magnitude")
    assert (motion_alignment(pair[1], pair[1], params).reward == 1.0).all()


@FAST
@given(flow_pairs(), st.sampled_from(VARIANTS))
def test_rewards_lie_on_six_levels(pair: Pair, variant: tuple[VectorTerm, DirectionTerm]) -> None:
    params = MotionRewardParams(vector_term=variant[0], direction_term=variant[1])
    r = motion_alignment(*pair, params)
    assert ((r.reward >= 0) & (r.reward <= 1)).all()
    assert ((r.reward_continuous >= 0) & (r.reward_continuous <= 1)).all()
    torch.testing.assert_close(r.reward * 5, torch.round(r.reward * 5), rtol=0, atol=1e-5)


@FAST
@given(flow_pairs())
def test_static_edit_is_penalised(pair: Pair) -> None:
    fg = pair[1]
    assume(bool((fg.flatten(1).abs().amax(1) >= 0.5).all()))
    still, exact = motion_alignment(torch.zeros_like(fg), fg), motion_alignment(fg, fg)
    assert (still.movement > 0).all()
    assert (still.movement > exact.movement).all()
    assert (still.reward_continuous < exact.reward_continuous).all()
    assert (still.reward <= exact.reward).all()


def upscale(flow: torch.Tensor) -> torch.Tensor:
    """The same motion on a 2x image: nearest-neighbour repeat, displacements doubled."""
    return flow.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) * 2


@FAST
@given(flow_pairs(), st.sampled_from(VARIANTS))
def test_scaling_image_and_flows_leaves_reward_unchanged(pair: Pair, variant: tuple[VectorTerm, DirectionTerm]) -> None:
    # Below eps (normalised) the magnitude-weighted term divides by the floor eps instead of
    # sum(weight), which grows with the pixel count: scale-free only for targets that move at all.
    peak = torch.linalg.vector_norm(pair[1], dim=1).flatten(1).amax(1) / math.hypot(*pair[1].shape[2:])
    assume(bool(((peak == 0) | (peak >= EPS)).all()))
    params = MotionRewardParams(vector_term=variant[0], direction_term=variant[1])
    small, big = motion_alignment(*pair, params), motion_alignment(upscale(pair[0]), upscale(pair[1]), params)
    for name in FIELDS[:-1]:
        torch.testing.assert_close(getattr(big, name), getattr(small, name), rtol=0, atol=1e-5)
    clear = ~on_a_half(small.reward_continuous)
    assert torch.equal(big.reward[clear], small.reward[clear])
    mas_small, mas_big = (
        motion_alignment_score(*pair),
        motion_alignment_score(upscale(pair[0]), upscale(pair[1])),
    )
    torch.testing.assert_close(mas_big, mas_small, rtol=0, atol=1e-3)


@FAST
@given(flow_pairs(), st.data())
def test_batch_items_are_independent(pair: Pair, data: st.DataObject) -> None:
    fe, fg = pair
    batch = motion_alignment(fe, fg)
    for i in range(fe.shape[0]):
        alone = motion_alignment(fe[i : i + 1], fg[i : i + 1])
        for name in FIELDS:
            torch.testing.assert_close(getattr(alone, name)[0], getattr(batch, name)[i], rtol=0, atol=1e-6)
    perm = torch.tensor(data.draw(st.permutations(range(fe.shape[0]))))
    permuted = motion_alignment(fe[perm], fg[perm])
    for name in FIELDS:
        torch.testing.assert_close(getattr(permuted, name), getattr(batch, name)[perm], rtol=0, atol=1e-6)
    # MAS is 200 x D_ovl on a 0-100 scale, so the fields' 1e-6 of float32 reduction order is 2e-4 here.
    mas_permuted, mas = motion_alignment_score(fe[perm], fg[perm]), motion_alignment_score(fe, fg)[perm]
    torch.testing.assert_close(mas_permuted, mas, rtol=0, atol=2e-4)


def test_accepts_other_float_dtypes() -> None:
    # Multiples of 1/8 within +-15: exact in float16 and bfloat16.
    fe, fg = (torch.round(f.clamp(-15, 15) * 8) / 8 for f in random_batch((2, 6, 5), seed=3))
    want = motion_alignment(fe, fg)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        got = motion_alignment(fe.to(dtype), fg.to(dtype))
        for name in FIELDS:
            assert getattr(got, name).dtype == torch.float32
            torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=1e-6)


BAD_FLOWS = {
    "3d": (torch.zeros(2, 4, 4), torch.zeros(2, 4, 4)),
    "5d": (torch.zeros(1, 1, 2, 4, 4), torch.zeros(1, 1, 2, 4, 4)),
    "three channels": (torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)),
    "shape mismatch": (torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5)),
    "batch mismatch": (torch.zeros(2, 2, 4, 4), torch.zeros(1, 2, 4, 4)),
    "empty image": (torch.zeros(1, 2, 0, 4), torch.zeros(1, 2, 0, 4)),
    "nan": (torch.full((1, 2, 4, 4), float("nan")), torch.zeros(1, 2, 4, 4)),
    "inf": (torch.zeros(1, 2, 4, 4), torch.full((1, 2, 4, 4), float("inf"))),
    "integer": (torch.zeros(1, 2, 4, 4, dtype=torch.int64), torch.zeros(1, 2, 4, 4, dtype=torch.int64)),
}


@pytest.mark.parametrize("case", BAD_FLOWS)
def test_rejects_invalid_flows(case: str) -> None:
    with pytest.raises(ValueError):
        motion_alignment(*BAD_FLOWS[case])
    with pytest.raises(ValueError):
        motion_alignment_score(*BAD_FLOWS[case])


@pytest.mark.parametrize(
    "kwargs",
    [{"levels": 1}, {"levels": 2.5}, {"eps": 0.0}, {"q": -1.0}, {"vector_weight": -0.1}, {"tau": math.nan},
     {"d_max": 0.0}, {"vector_term": "l2"}, {"direction_term": "soft"}],
)  # fmt: skip
def test_rejects_invalid_params(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        MotionRewardParams(**kwargs)


def test_version_names_the_definition() -> None:
    assert MotionRewardParams().version == "motion-alignment/1+component+mask"
    paper = MotionRewardParams(vector_term="pixel_l1", direction_term="magnitude")
    assert paper.version == "motion-alignment/1+pixel_l1+magnitude"
    tweaked = {MotionRewardParams(tau=0.02).version, MotionRewardParams(levels=11).version}
    assert len(tweaked) == 2 and all(v.startswith("motion-alignment/1+component+mask+") for v in tweaked)
    assert MotionRewardParams(tau=0.02).version == MotionRewardParams(tau=0.02).version
    assert MotionRewardParams(q=1).version == MotionRewardParams(q=1.0).version
    assert MotionRewardParams(levels=6, tau=0.01).version == MotionRewardParams().version


@FAST
@given(flow_pairs())
def test_mas_is_a_percentage(pair: Pair) -> None:
    score = motion_alignment_score(*pair)
    assert score.shape == (pair[0].shape[0],) and score.dtype == torch.float32
    assert ((score >= 0) & (score <= 100)).all()


@FAST
@given(flow_pairs(CLEAR))
def test_mas_full_for_exact_and_zero_for_static_edits(pair: Pair) -> None:
    fg = pair[1]
    assume(bool((fg.flatten(1).abs().amax(1) > 0).all()))
    assert (motion_alignment_score(fg, fg) == 100).all()
    assert (motion_alignment_score(torch.zeros_like(fg), fg) == 0).all()


def test_mas_static_target_is_not_gated() -> None:
    still, moving = torch.zeros(1, 2, 8, 8), uniform(8, 8, 2.0, 0.0)
    assert motion_alignment_score(still, still).item() == 100
    assert 0 < motion_alignment_score(moving, still).item() < 100


def test_mas_and_reward_decrease_as_the_edit_turns_away() -> None:
    gen = torch.Generator().manual_seed(0)
    fg = torch.zeros(1, 2, 16, 16)
    fg[:, :, 4:12, 4:12] = torch.randn(1, 2, 8, 8, generator=gen) * 2 + torch.tensor([3.0, -1.0])[:, None, None]
    scores, rewards = [], []
    for theta in torch.linspace(0, math.pi, 13).tolist():
        c, s = math.cos(theta), math.sin(theta)
        fe = torch.stack([c * fg[:, 0] - s * fg[:, 1], s * fg[:, 0] + c * fg[:, 1]], dim=1)
        scores.append(motion_alignment_score(fe, fg).item())
        rewards.append(motion_alignment(fe, fg).reward_continuous.item())
    assert scores[0] == 100 and scores[-1] == 0
    assert all(b <= a + 1e-4 for a, b in itertools.pairwise(scores))
    assert all(b < a for a, b in itertools.pairwise(rewards))
    assert 0 < scores[6] < 100  # at 90 degrees: neither perfect nor clamped


def test_mas_rejects_invalid_params() -> None:
    for kwargs in ({"alpha": 1.5}, {"d_min": 0.5, "d_max": 0.5}, {"eps": 0.0}):
        with pytest.raises(ValueError):
            MASParams(**kwargs)

"""Tests of trainer.nft: hand-computed losses in both forms, adaptive weighting, KL, masking, gradients."""

from __future__ import annotations

import math
from typing import Any, Literal

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.nft import NFTLossParams, interpolate, nft_loss

# The hand example, B = 2 items of D = 2 numbers:
#   x0    = [[1, 0], [0, 2]]      noise = [[0, 1], [2, 0]]      t = [0.5, 0.25]
#   v     = noise - x0 = [[-1, 1], [2, -2]]
#   x_t   = (1 - t) x0 + t noise = [[0.5, 0.5], [0.5, 1.5]]
#   v_theta = [[0, 0], [1, -2]]   v_old = [[-1, 1], [1, -1]]    v_ref = 0    w = [1, 0.25]
# With beta = 1: v+ = v_theta, v- = 2 v_old - v_theta = [[-2, 2], [1, 0]].
X0 = [[1.0, 0.0], [0.0, 2.0]]
NOISE = [[0.0, 1.0], [2.0, 0.0]]
T = [0.5, 0.25]
V_THETA = [[0.0, 0.0], [1.0, -2.0]]
V_OLD = [[-1.0, 1.0], [1.0, -1.0]]
W = [1.0, 0.25]
Form = Literal["reference", "paper"]


def _tensors(requires_grad: bool = True) -> dict[str, Any]:
    return {
        "v_theta": torch.tensor(V_THETA, requires_grad=requires_grad),
        "v_old": torch.tensor(V_OLD),
        "v_ref": torch.zeros(2, 2),
        "x0": torch.tensor(X0),
        "noise": torch.tensor(NOISE),
        "t": torch.tensor(T),
        "weight": torch.tensor(W),
        "valid": torch.ones(2, dtype=torch.bool),
    }


def test_reference_form_by_hand() -> None:
    # x+ - x0 = t (v - v+):  item 0: 0.5 ([-1, 1] - [0, 0])  = [-0.5, 0.5]
    #   mean sq 0.25, mean abs 0.5  -> L+_0 = 0.25 / 0.5 = 0.5
    # x- - x0 = t (v - v-):  item 0: 0.5 ([-1, 1] - [-2, 2]) = [0.5, -0.5]  -> L-_0 = 0.5
    # item 1: e+ = 0.25 ([2, -2] - [1, -2]) = [0.25, 0]:   mean sq 0.03125, mean abs 0.125 -> L+_1 = 0.25
    #         e- = 0.25 ([2, -2] - [1, 0])  = [0.25, -0.5]: mean sq 0.15625, mean abs 0.375 -> L-_1 = 5/12
    # per item: w L+ + (1 - w) L- = [1 * 0.5, 0.25 * 0.25 + 0.75 * 5/12] = [0.5, 0.375]; mean 0.4375
    # policy = 5 * 0.4375 / beta(1) = 2.1875
    # KL: |v_theta - 0|^2 per item = [0, (1 + 4) / 2] = [0, 2.5]; mean 1.25; times 0.1 = 0.125
    out = nft_loss(**_tensors(), params=NFTLossParams(kl_weight=0.1))
    assert out.loss.item() == pytest.approx(2.1875 + 0.125)
    assert out.positive.item() == pytest.approx((0.5 + 0.25) / 2)
    assert out.negative.item() == pytest.approx((0.5 + 5 / 12) / 2)
    assert out.kl.item() == pytest.approx(1.25)
    assert out.x0_norm.item() == pytest.approx(0.75)  # mean |x0| = (1 + 0 + 0 + 2) / 4
    assert out.valid_fraction.item() == 1.0
    assert out.metrics()["loss"] == pytest.approx(2.3125)


def test_paper_form_by_hand() -> None:
    # item 0: v+ - v = [0, 0] - [-1, 1] = [1, -1] -> 1;   v- - v = [-2, 2] - [-1, 1] = [-1, 1] -> 1
    # item 1: v+ - v = [1, -2] - [2, -2] = [-1, 0] -> 0.5; v- - v = [1, 0] - [2, -2] = [-1, 2] -> 2.5
    # L = [1 * 1 + 0 * 1, 0.25 * 0.5 + 0.75 * 2.5] = [1, 2]; mean 1.5 (no scale, no / beta)
    out = nft_loss(**{**_tensors(), "v_ref": None}, params=NFTLossParams(form="paper"))
    assert out.loss.item() == pytest.approx(1.5)
    assert out.positive.item() == pytest.approx(0.75)
    assert out.negative.item() == pytest.approx(1.75)
    assert out.kl.item() == 0.0
    # The KL term is added in the paper form too: 1.5 + 0.1 * 1.25.
    with_kl = nft_loss(**_tensors(), params=NFTLossParams(form="paper", kl_weight=0.1))
    assert with_kl.loss.item() == pytest.approx(1.625)


def test_without_the_negative_branch_by_hand() -> None:
    # The ablation keeps only w L+: reference [1 * 0.5, 0.25 * 0.25] -> mean 0.28125, times 5 = 1.40625;
    # paper [1 * 1, 0.25 * 0.5] -> mean 0.5625. The branch's errors are still reported.
    reference = nft_loss(**{**_tensors(), "v_ref": None}, params=NFTLossParams(negative_branch=False))
    assert reference.loss.item() == pytest.approx(1.40625)
    assert reference.negative.item() == pytest.approx((0.5 + 5 / 12) / 2)
    paper = nft_loss(**{**_tensors(), "v_ref": None}, params=NFTLossParams(form="paper", negative_branch=False))
    assert paper.loss.item() == pytest.approx(0.5625)


def test_reference_form_beta_half_by_hand() -> None:
    # item 0 alone, beta = 0.5, w = 0.5:
    # v+ = 0.5 [0, 0] + 0.5 [-1, 1] = [-0.5, 0.5];  e+ = 0.5 ([-1, 1] - v+) = [-0.25, 0.25] -> 0.0625 / 0.25 = 0.25
    # v- = 1.5 [-1, 1] - 0.5 [0, 0] = [-1.5, 1.5];  e- = 0.5 ([-1, 1] - v-) = [0.25, -0.25] -> 0.25
    # loss = 5 * (0.5 * 0.25 + 0.5 * 0.25) / 0.5 = 2.5
    x = {k: v[:1] for k, v in _tensors(requires_grad=False).items()}
    x["weight"] = torch.tensor([0.5])
    out = nft_loss(**{**x, "v_ref": None}, params=NFTLossParams(beta=0.5))
    assert out.loss.item() == pytest.approx(2.5)


def _single(c: float, requires_grad: bool = True) -> dict[str, Any]:
    """One (1, 2, 3, 3) float64 item whose x0-prediction error is c times a fixed +-1 pattern (w = 1)."""
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 2, 3, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(1, 2, 3, 3, generator=gen, dtype=torch.float64)
    signs = torch.randint(0, 2, (1, 2, 3, 3), generator=gen).double() * 2 - 1
    t = torch.tensor([0.8], dtype=torch.float64)
    v_theta = (noise - x0 + c * signs).requires_grad_(requires_grad)
    return {
        "v_theta": v_theta,
        "v_old": v_theta.detach().clone(),
        "v_ref": None,
        "x0": x0,
        "noise": noise,
        "t": t,
        "weight": torch.ones(1, dtype=torch.float64),
        "valid": torch.ones(1, dtype=torch.bool),
    }


def test_adaptive_weighting_normalises_by_the_mean_error() -> None:
    # x+ - x0 = t (v - v_theta) = -0.8 c signs: every |error| is 0.8 c, so
    # L+ = mean(0.64 c^2) / mean(0.8 c) = 0.8 c: linear in the error, not quadratic, and the gradient
    # 2 (x+ - x0) / mean|x+ - x0| does not depend on c at all.
    grads = []
    for c in (1e-3, 1.0, 1e3):
        x = _single(c)
        out = nft_loss(**x)
        assert out.positive.item() == pytest.approx(0.8 * c, rel=1e-5)
        assert out.loss.item() == pytest.approx(5 * 0.8 * c, rel=1e-5)
        out.loss.backward()
        grads.append(x["v_theta"].grad)
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(grads[1], grads[2])


def test_adaptive_eps_floors_a_perfect_prediction() -> None:
    x = _single(0.0)  # x+ == x0 up to rounding: about 0 / max(0, eps), not 0 / 0
    out = nft_loss(**x)
    assert 0.0 <= out.loss.item() < 1e-9
    out.loss.backward()
    assert torch.isfinite(x["v_theta"].grad).all()


def test_kl_term_and_its_gradient() -> None:
    x = _tensors()
    x["v_ref"] = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    base = nft_loss(**x, params=NFTLossParams(kl_weight=0.0)).loss
    out = nft_loss(**x, params=NFTLossParams(kl_weight=0.5))
    # |v_theta - v_ref|^2 per item: [(1 + 1) / 2, (0 + 9) / 2] = [1, 4.5]; mean 2.75
    assert out.kl.item() == pytest.approx(2.75)
    assert (out.loss - base).item() == pytest.approx(0.5 * 2.75)
    # Only the KL part, alone (v_old = v_theta, w anything): d/dv_theta = 0.5 * 2 (v_theta - v_ref) / (2 * 2).
    v_theta = torch.tensor(V_THETA, requires_grad=True)
    kl_only = nft_loss(**{**x, "v_theta": v_theta, "v_old": v_theta.detach()}, params=NFTLossParams(kl_weight=0.5))
    policy_only = nft_loss(**{**x, "v_theta": v_theta, "v_old": v_theta.detach()}, params=NFTLossParams(kl_weight=0.0))
    (kl_only.loss - policy_only.loss).backward()
    torch.testing.assert_close(v_theta.grad, 0.5 * 2 * (v_theta.detach() - x["v_ref"]) / 4)


@pytest.mark.parametrize("form", ["reference", "paper"])
@pytest.mark.parametrize("w", [1.0, 0.0])
def test_gradient_descent_direction(form: Form, w: float) -> None:
    # v_old frozen at the initial v_theta (as at the start of an epoch). w = 1 pulls v_theta's
    # x0-prediction x_t - t v_theta toward the sample's x0; w = 0 pushes it away (v- goes toward v).
    x = _single(0.5, requires_grad=False)
    v_theta = torch.nn.Parameter(x["v_theta"].clone())
    x_t = interpolate(x["x0"], x["noise"], x["t"])
    t = x["t"].reshape(-1, 1, 1, 1)

    def distance() -> float:
        return (x_t - t * v_theta.detach() - x["x0"]).norm().item()

    start = distance()
    # The reference form's gradient is normalised (about 2 t / numel per element); the paper's is not.
    opt = torch.optim.SGD([v_theta], lr=0.02 if form == "reference" else 2.0)
    for _ in range(10):
        opt.zero_grad()
        nft_loss(
            **{**x, "v_theta": v_theta, "weight": torch.tensor([w])}, params=NFTLossParams(form=form)
        ).loss.backward()
        opt.step()
    assert (distance() < 0.9 * start) if w == 1.0 else (distance() > 1.1 * start)


@pytest.mark.parametrize("form", ["reference", "paper"])
def test_invalid_items_contribute_nothing(form: Form) -> None:
    params = NFTLossParams(form=form, kl_weight=0.1)
    x = _tensors()
    x["valid"] = torch.tensor([True, False])
    # Garbage in the invalid item must not leak into the value or the gradient.
    for name in ("v_old", "v_ref", "x0", "noise"):
        x[name] = x[name].clone()
        x[name][1] = math.nan
    out = nft_loss(**x, params=params)
    alone = nft_loss(**{k: v[:1].detach() if k != "v_theta" else v[:1] for k, v in _tensors().items()}, params=params)
    assert out.loss.item() == pytest.approx(alone.loss.item())
    assert out.valid_fraction.item() == 0.5
    out.loss.backward()
    assert torch.equal(x["v_theta"].grad[1], torch.zeros(2))
    assert torch.isfinite(x["v_theta"].grad).all()


@pytest.mark.parametrize("form", ["reference", "paper"])
def test_all_invalid_batch_is_a_safe_zero(form: Form) -> None:
    x = _tensors()
    x["valid"] = torch.zeros(2, dtype=torch.bool)
    out = nft_loss(**x, params=NFTLossParams(form=form))
    assert out.loss.item() == 0.0
    assert out.loss.grad_fn is not None
    assert out.valid_fraction.item() == 0.0
    assert out.positive.item() == out.negative.item() == out.kl.item() == 0.0
    out.loss.backward()
    assert torch.equal(x["v_theta"].grad, torch.zeros(2, 2))


def test_only_v_theta_gets_gradients_and_bf16_is_upcast() -> None:
    x = _tensors()
    x["v_old"] = x["v_old"].requires_grad_(True)
    x["v_ref"] = x["v_ref"].requires_grad_(True)
    nft_loss(**x).loss.backward()
    assert x["v_old"].grad is None and x["v_ref"].grad is None
    bf16 = {k: (v.detach().bfloat16() if v.is_floating_point() else v) for k, v in _tensors().items()}
    assert nft_loss(**bf16).loss.dtype == torch.float32


def test_interpolate_broadcasts_t() -> None:
    x0, noise = torch.zeros(3, 2, 4, 4), torch.ones(3, 2, 4, 4)
    x_t = interpolate(x0, noise, torch.tensor([0.0, 0.25, 1.0]))
    assert x_t.shape == (3, 2, 4, 4)
    assert x_t[0].eq(0).all() and x_t[1].eq(0.25).all() and x_t[2].eq(1).all()
    with pytest.raises(ValueError):
        interpolate(x0, noise[:, :1], torch.zeros(3))


def test_bad_inputs_and_params_are_refused() -> None:
    x = _tensors()
    with pytest.raises(ValueError, match="v_old"):
        nft_loss(**{**x, "v_old": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="weight"):
        nft_loss(**{**x, "weight": torch.ones(3)})
    with pytest.raises(ValueError, match="bool"):
        nft_loss(**{**x, "valid": torch.ones(2)})
    for bad in ({"beta": 0.0}, {"adaptive_eps": 0.0}, {"kl_weight": -1.0}, {"form": "other"}, {"loss_scale": math.inf}):
        with pytest.raises(ValueError):
            NFTLossParams(**bad)


@settings(max_examples=40, deadline=None)
@given(w=st.floats(0.0, 1.0), form=st.sampled_from(["reference", "paper"]))
def test_loss_is_affine_in_the_weight(w: float, form: Form) -> None:
    # For one item, L(w) = w L(1) + (1 - w) L(0): w only interpolates between the two objectives.
    x = {k: v[1:].detach() for k, v in _tensors().items()}
    params = NFTLossParams(form=form, kl_weight=0.0)

    def loss(weight: float) -> float:
        return nft_loss(**{**x, "weight": torch.tensor([weight])}, params=params).loss.item()

    assert loss(w) == pytest.approx(w * loss(1.0) + (1 - w) * loss(0.0), rel=1e-5, abs=1e-6)
    assert loss(w) >= 0.0

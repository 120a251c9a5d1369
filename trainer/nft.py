"""The DiffusionNFT (negative-aware fine-tuning) loss: pure tensor math (docs/method.md section 5).

Tensor conventions:
- ``x0`` (clean latents), ``noise`` and the velocity predictions ``v_theta`` (trainable adapter),
  ``v_old`` (sampling adapter) and ``v_ref`` (frozen base) are (B, ...) floating tensors of one
  shape, in latent units; the velocities are predicted at x_t = (1 - t) x0 + t noise, so the
  flow-matching target is v = noise - x0;
- ``t`` is (B,) in [0, 1] (0 = clean, 1 = pure noise), ``weight`` is the (B,) optimality weight w
  in [0, 1] (`trainer.advantages.optimality_weight`), ``valid`` a (B,) bool mask: False for items
  of banned prompts or dropped groups, which contribute nothing to the loss nor to the gradient;
- "mean" over an item is over all its non-batch elements; losses are computed in float32 at least
  (bf16 inputs are upcast) and returned as 0-dim tensors.

Only ``v_theta`` receives gradients: ``v_old`` and ``v_ref`` are detached here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

LossForm = Literal["reference", "paper"]
_FORMS = ("reference", "paper")


@dataclass(frozen=True)
class NFTLossParams:
    """Constants of the NFT loss; defaults = the reference implementation (docs/method.md section 5).

    ``form``: "reference" (default) compares x0-predictions with adaptive weighting, scaled by
    ``loss_scale`` and divided by ``beta``; "paper" is the plain velocity objective
    w |v+ - v|^2 + (1 - w) |v- - v|^2 (no scale, no division by beta).
    ``beta``: mixing strength of the implicit positive / negative policies (> 0).
    ``kl_weight``: weight of mean |v_theta - v_ref|^2, added in both forms when ``v_ref`` is given
    (0 gives the paper's objective exactly).
    ``loss_scale``: the reference's multiplier of the policy term (its adv_clip_max, 5).
    ``adaptive_eps``: floor of the adaptive weight's denominator mean|x^ - x0| (latent units), as
    the reference's clip(min=1e-5); keeps a perfect prediction from dividing by zero.
    """

    form: LossForm = "reference"
    beta: float = 1.0
    kl_weight: float = 1e-4
    loss_scale: float = 5.0
    adaptive_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.form not in _FORMS:
            raise ValueError(f"form must be one of {_FORMS}, got {self.form!r}")
        for name in ("beta", "kl_weight", "loss_scale", "adaptive_eps"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if self.beta <= 0 or self.adaptive_eps <= 0:
            raise ValueError("beta and adaptive_eps must be > 0")


# eq=False: a generated __eq__ would compare tensors with ==, whose truth value is ambiguous.
@dataclass(frozen=True, eq=False)
class NFTLoss:
    """One NFT loss evaluation.

    ``loss``: 0-dim, differentiable w.r.t. ``v_theta`` (always has a grad_fn when v_theta requires
    grad, even when no item is valid). The rest are detached 0-dim float32 metrics over the valid
    items (0 when there are none): ``positive`` / ``negative`` the mean per-item L+ / L- of the
    chosen form (before w, beta and scale), ``kl`` the mean |v_theta - v_ref|^2 (0 without v_ref),
    ``x0_norm`` the mean |x0| (latent units), ``valid_fraction`` the share of valid items.
    """

    loss: Tensor
    positive: Tensor
    negative: Tensor
    kl: Tensor
    x0_norm: Tensor
    valid_fraction: Tensor

    def metrics(self) -> dict[str, float]:
        """Every field as a Python float (synchronises with the device), for logging."""
        names = ("loss", "positive", "negative", "kl", "x0_norm", "valid_fraction")
        return {name: float(getattr(self, name).detach()) for name in names}


def interpolate(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """The forward process x_t = (1 - t) x0 + t noise; x0, noise (B, ...), t (B,) broadcast over the rest."""
    if x0.shape != noise.shape:
        raise ValueError(f"x0 and noise differ in shape: {tuple(x0.shape)} vs {tuple(noise.shape)}")
    tb = _per_item(t, x0)
    return (1 - tb) * x0 + tb * noise


def nft_loss(
    v_theta: Tensor,
    v_old: Tensor,
    v_ref: Tensor | None,
    x0: Tensor,
    noise: Tensor,
    t: Tensor,
    weight: Tensor,
    valid: Tensor,
    params: NFTLossParams | None = None,
) -> NFTLoss:
    """The DiffusionNFT loss of one batch (shapes in the module docstring).

    v+ = beta v_theta + (1 - beta) v_old, v- = (1 + beta) v_old - beta v_theta, v = noise - x0.
    Paper form: L = w |v+ - v|^2 + (1 - w) |v- - v|^2 per item, averaged over valid items.
    Reference form: x± = x_t - t v±, L± = mean((x± - x0)^2) / max(detach(mean|x± - x0|), eps) per
    item; loss = loss_scale * mean_valid[(w L+ + (1 - w) L-) / beta].
    Both forms add kl_weight * mean_valid(mean |v_theta - v_ref|^2) when v_ref is given.
    """
    params = params or NFTLossParams()
    _check_inputs(v_theta, v_old, v_ref, x0, noise, t, weight, valid)
    dtype = torch.promote_types(v_theta.dtype, torch.float32)
    batch = v_theta.shape[0]
    # Selecting the valid rows (rather than masking) keeps NaNs of invalid rows out of the gradient;
    # with no valid row the sums below are over empty tensors: an exact 0 still on v_theta's graph.
    v_theta_v = v_theta[valid].to(dtype)
    v_old_v = v_old[valid].detach().to(dtype)
    x0_v = x0[valid].to(dtype)
    noise_v = noise[valid].to(dtype)
    t_v = t[valid].to(dtype)
    w_v = weight[valid].to(dtype)
    n_valid = v_theta_v.shape[0]

    beta = params.beta
    v_pos = beta * v_theta_v + (1 - beta) * v_old_v
    v_neg = (1 + beta) * v_old_v - beta * v_theta_v
    if params.form == "paper":
        target = noise_v - x0_v
        l_pos = _item_mean((v_pos - target) ** 2)
        l_neg = _item_mean((v_neg - target) ** 2)
        policy = _mean(w_v * l_pos + (1 - w_v) * l_neg, n_valid)
    else:
        x_t = interpolate(x0_v, noise_v, t_v)
        tb = _per_item(t_v, x0_v)
        l_pos = _adaptive_error(x_t - tb * v_pos, x0_v, params.adaptive_eps)
        l_neg = _adaptive_error(x_t - tb * v_neg, x0_v, params.adaptive_eps)
        policy = params.loss_scale * _mean((w_v * l_pos + (1 - w_v) * l_neg) / beta, n_valid)

    if v_ref is not None:
        kl_items = _item_mean((v_theta_v - v_ref[valid].detach().to(dtype)) ** 2)
        kl = _mean(kl_items, n_valid)
        loss = policy + params.kl_weight * kl
    else:
        kl = torch.zeros((), dtype=dtype, device=v_theta.device)
        loss = policy
    return NFTLoss(
        loss=loss,
        positive=_mean(l_pos, n_valid).detach(),
        negative=_mean(l_neg, n_valid).detach(),
        kl=kl.detach(),
        x0_norm=_mean(_item_mean(x0_v.abs()), n_valid).detach(),
        valid_fraction=torch.tensor(n_valid / batch if batch else 0.0, dtype=torch.float32, device=v_theta.device),
    )


def _adaptive_error(x_hat: Tensor, x0: Tensor, eps: float) -> Tensor:
    """Per item mean((x^ - x0)^2) / max(detach(mean|x^ - x0|), eps): (B,); gradient norm ~ scale-free."""
    err = x_hat - x0
    scale = _item_mean(err.detach().abs()).clamp_min(eps)
    return _item_mean(err**2) / scale


def _item_mean(x: Tensor) -> Tensor:
    """Mean over all non-batch dims: (B, ...) -> (B,)."""
    return x.flatten(1).mean(dim=1) if x.dim() > 1 else x


def _mean(x: Tensor, n: int) -> Tensor:
    """Mean of a (N,) tensor, 0 (still attached) when N = 0."""
    return x.sum() / max(n, 1)


def _per_item(t: Tensor, like: Tensor) -> Tensor:
    """(B,) -> (B, 1, ..., 1) to broadcast against ``like``."""
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def _check_inputs(
    v_theta: Tensor,
    v_old: Tensor,
    v_ref: Tensor | None,
    x0: Tensor,
    noise: Tensor,
    t: Tensor,
    weight: Tensor,
    valid: Tensor,
) -> None:
    shape = v_theta.shape
    if v_theta.dim() < 1:
        raise ValueError("v_theta must have a batch dimension")
    named = {"v_old": v_old, "x0": x0, "noise": noise} | ({"v_ref": v_ref} if v_ref is not None else {})
    for name, tensor in named.items():
        if tensor.shape != shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)} like v_theta")
    for name, tensor in {"t": t, "weight": weight, "valid": valid}.items():
        if tensor.shape != (shape[0],):
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected ({shape[0]},)")
    if valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool tensor, got {valid.dtype}")

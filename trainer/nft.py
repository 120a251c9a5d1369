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
    ``negative_branch``: False drops the (1 - w) negative term, leaving reward-weighted regression
    towards the implicit positive policy alone (an ablation; the method keeps both).
    """

    form: LossForm = "reference"
    beta: float = 1.0
    kl_weight: float = 1e-4
    loss_scale: float = 5.0
    adaptive_eps: float = 1e-5
    negative_branch: bool = True

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
    rows = _ValidRows.select(v_theta, v_old, v_ref, x0, noise, t, weight, valid)
    v_pos, v_neg = _implicit_velocities(rows.v_theta, rows.v_old, params.beta)
    negative_share = (1 - rows.weight) if params.negative_branch else torch.zeros_like(rows.weight)
    if params.form == "paper":
        l_pos, l_neg = _paper_errors(v_pos, v_neg, rows.x0, rows.noise)
        policy = _mean(rows.weight * l_pos + negative_share * l_neg, rows.n)
    else:
        l_pos, l_neg = _reference_errors(v_pos, v_neg, rows.x0, rows.noise, rows.t, params.adaptive_eps)
        mixed = rows.weight * l_pos + negative_share * l_neg
        policy = params.loss_scale * _mean(mixed / params.beta, rows.n)
    kl = _kl(rows)
    batch = v_theta.shape[0]
    return NFTLoss(
        loss=policy + params.kl_weight * kl if rows.v_ref is not None else policy,
        positive=_mean(l_pos, rows.n).detach(),
        negative=_mean(l_neg, rows.n).detach(),
        kl=kl.detach(),
        x0_norm=_mean(_item_mean(rows.x0.abs()), rows.n).detach(),
        valid_fraction=torch.tensor(rows.n / batch if batch else 0.0, dtype=torch.float32, device=v_theta.device),
    )


# eq=False: a generated __eq__ would compare tensors with ==, whose truth value is ambiguous.
@dataclass(frozen=True, eq=False)
class _ValidRows:
    """The N valid items of a batch, upcast to the loss dtype (float32 at least).

    ``v_theta``, ``v_old``, ``x0``, ``noise`` and ``v_ref`` (None when not given) are (N, ...),
    ``t`` and ``weight`` (N,); only ``v_theta`` stays on the autograd graph.
    """

    v_theta: Tensor
    v_old: Tensor
    v_ref: Tensor | None
    x0: Tensor
    noise: Tensor
    t: Tensor
    weight: Tensor

    @property
    def n(self) -> int:
        """N, the number of valid items (0 is allowed)."""
        return self.v_theta.shape[0]

    @classmethod
    def select(
        cls,
        v_theta: Tensor,
        v_old: Tensor,
        v_ref: Tensor | None,
        x0: Tensor,
        noise: Tensor,
        t: Tensor,
        weight: Tensor,
        valid: Tensor,
    ) -> _ValidRows:
        """The rows where the (B,) bool ``valid`` is True, of (B, ...) / (B,) inputs as in `nft_loss`."""
        dtype = torch.promote_types(v_theta.dtype, torch.float32)
        # Selecting the valid rows (rather than masking) keeps NaNs of invalid rows out of the gradient;
        # with no valid row the sums are over empty tensors: an exact 0 still on v_theta's graph.
        return cls(
            v_theta=v_theta[valid].to(dtype),
            v_old=v_old[valid].detach().to(dtype),
            v_ref=v_ref[valid].detach().to(dtype) if v_ref is not None else None,
            x0=x0[valid].to(dtype),
            noise=noise[valid].to(dtype),
            t=t[valid].to(dtype),
            weight=weight[valid].to(dtype),
        )


def _implicit_velocities(v_theta: Tensor, v_old: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """The implicit positive and negative policies' velocities (v+, v-), each (N, ...) like the inputs.

    v+ = beta v_theta + (1 - beta) v_old, v- = (1 + beta) v_old - beta v_theta.
    """
    v_pos = beta * v_theta + (1 - beta) * v_old
    v_neg = (1 + beta) * v_old - beta * v_theta
    return v_pos, v_neg


def _paper_errors(v_pos: Tensor, v_neg: Tensor, x0: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Paper form per item: (L+, L-) = (mean |v+ - v|^2, mean |v- - v|^2), each (N,); v = noise - x0.

    ``v_pos``, ``v_neg``, ``x0`` and ``noise`` are (N, ...).
    """
    target = noise - x0
    return _item_mean((v_pos - target) ** 2), _item_mean((v_neg - target) ** 2)


def _reference_errors(
    v_pos: Tensor, v_neg: Tensor, x0: Tensor, noise: Tensor, t: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """Reference form per item: the adaptive x0-prediction errors (L+, L-), each (N,).

    x± = x_t - t v± with x_t = (1 - t) x0 + t noise; L± = `_adaptive_error`(x±, x0, eps).
    ``v_pos``, ``v_neg``, ``x0`` and ``noise`` are (N, ...), ``t`` is (N,).
    """
    x_t = interpolate(x0, noise, t)
    tb = _per_item(t, x0)
    return _adaptive_error(x_t - tb * v_pos, x0, eps), _adaptive_error(x_t - tb * v_neg, x0, eps)


def _kl(rows: _ValidRows) -> Tensor:
    """mean_valid(mean |v_theta - v_ref|^2) over the rows: 0-dim, attached to v_theta; an exact 0 without v_ref."""
    if rows.v_ref is None:
        return torch.zeros((), dtype=rows.v_theta.dtype, device=rows.v_theta.device)
    return _mean(_item_mean((rows.v_theta - rows.v_ref) ** 2), rows.n)


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

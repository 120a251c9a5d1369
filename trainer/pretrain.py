"""Supervised pretraining of a tiny policy (FLUX.1 Kontext's here, Qwen-Image-Edit's in
`trainer.pretrain_qwen`), so the embedded demo's policy can edit at all.

This is training, not rollout, so it lives with the trainer (the workers only sample and score).
A random tiny VAE decodes its own encodings to noise, so a random policy cannot make a visible edit
and rewards would have nothing to rank. Pretraining therefore has two stages:

1. The VAE, as a small autoencoder on every input and target image: reconstruction MSE in [-1, 1]
   on a posterior sample (which also teaches the decoder to tolerate imperfect latents) plus a small
   KL term. Then FLUX's latent normalisation is set from the data: `shift_factor` = the latents' mean,
   `scaling_factor` = 1 / their std, so the flow model sees roughly unit-variance latents.
2. The transformer (all of it; no LoRA), by flow matching on those latents: x0 = packed latents of
   the target, the condition = what `FluxKontextPolicy.encode_conditions` makes of the prompt and the
   input image (Kontext's token concatenation; the same encoding rollouts use),
   x_t = (1 - t) x0 + t n with t logit-normal, loss |v(x_t, t) - (n - x0)|^2. The guidance value is
   drawn uniformly from [1, 4] (there is no teacher to distil from, so the model learns to ignore it).
   The text encoders stay frozen and random: they still give each prompt a distinct embedding.

The stages are the same for every family; what differs (building the tiny pipeline, the VAE's input
layout and latent normalisation, the conditions, the velocity) is a `PretrainFamily`.
The result is a diffusers directory (`save_pretrained`) plus `pretrain.json` (settings, wall times,
first and final losses). Everything is seeded; no global RNG is touched.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from diffusers import FluxKontextPipeline
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from torch import Tensor

from workers.policies.base import FluxConditions
from workers.policies.flux_kontext import (
    FluxKontextPolicy,
    KontextPipeline,
    encode_images,
    kontext_velocity,
    pixels_from_uint8,
)
from workers.policies.tiny import build_tiny_kontext

Pair = tuple[np.ndarray, np.ndarray, str]
# A family's training conditions for many pairs: its Conditions plus `select(indices)`.
EditConditions = Any
KL_WEIGHT = 1e-4  # per latent element, against a per-pixel MSE
GUIDANCE_RANGE = (1.0, 4.0)
ENCODE_CHUNK = 64  # images per VAE call while encoding the data set
LRSchedule = Literal["constant", "cosine"]


def as_pair(item: Any) -> Pair:
    """An (input, target, prompt) tuple, or anything with `input_image`, `target_image`, `prompt` (a SynthPair)."""
    if hasattr(item, "input_image"):
        return item.input_image, item.target_image, item.prompt
    source, target, prompt = item
    return source, target, prompt


def _summary(losses: list[float]) -> dict[str, float]:
    window = max(1, len(losses) // 10)
    return {"first": float(np.mean(losses[:window])), "final": float(np.mean(losses[-window:]))}


def fit_vae(
    vae: AutoencoderKL, pixels: Tensor, *, steps: int, batch_size: int, lr: float, generator: torch.Generator
) -> list[float]:
    """Fit the VAE on pixels in [-1, 1] (B, 3, H, W); returns the per-step losses."""
    vae.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    losses: list[float] = []
    for _ in range(steps):
        batch = pixels[torch.randint(len(pixels), (batch_size,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator)
        latents = posterior.mean + posterior.std * noise
        reconstruction = vae.decode(latents).sample
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = torch.nn.functional.mse_loss(reconstruction, batch) + KL_WEIGHT * kl
        losses.append(_step(optimizer, vae.parameters(), loss))
    vae.eval().requires_grad_(False)
    return losses


def _step(optimizer: torch.optim.Optimizer, parameters: Iterable[Tensor], loss: Tensor) -> float:
    """One clipped (grad norm 1) optimizer step on `loss`; returns the loss as a float."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    return loss.item()


@dataclass(frozen=True)
class PretrainFamily:
    """What pretraining needs of one family's tiny pipeline."""

    name: str
    build: Callable[[int], Any]  # seed -> a fresh random tiny pipeline
    pixels: Callable[[Any, np.ndarray, int], Tensor]  # (pipeline, uint8 (B, H, W, 3), size) -> VAE input in [-1, 1]
    normalise: Callable[[Any, Tensor], dict[str, Any]]  # fit the VAE's latent normalisation to pixels; report it
    edit_data: Callable[[Any, list[Pair], int], tuple[Tensor, EditConditions]]  # target latents x0, conditions
    # (pipeline, x_t, t, conditions, generator) -> velocity; the generator draws what the family randomises
    velocity: Callable[[Any, Tensor, Tensor, EditConditions, torch.Generator], Tensor]


@torch.no_grad()
def normalise_latents(vae: AutoencoderKL, pixels: Tensor) -> tuple[float, float]:
    """Set the VAE's shift_factor / scaling_factor so its latents of `pixels` have mean 0 and std 1."""
    latents = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in pixels.split(ENCODE_CHUNK)])
    shift, scale = float(latents.mean()), float(1.0 / latents.std())
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    return shift, scale


def _normalise_flux(pipeline: KontextPipeline, pixels: Tensor) -> dict[str, Any]:
    shift, scale = normalise_latents(pipeline.vae, pixels)
    return {"shift_factor": shift, "scaling_factor": scale}


def _guided_velocity(
    pipeline: KontextPipeline, x_t: Tensor, t: Tensor, conditions: FluxConditions, generator: torch.Generator
) -> Tensor:
    """Kontext's velocity at a guidance value drawn uniformly from GUIDANCE_RANGE."""
    low, high = GUIDANCE_RANGE
    guidance = low + (high - low) * float(torch.rand((), generator=generator))
    return kontext_velocity(pipeline, x_t, t, conditions, guidance)


def condition_encoder(pipeline: KontextPipeline, size: int) -> FluxKontextPolicy:
    """A policy that encodes conditions with `pipeline`'s VAE and text encoders, exactly as rollouts do.

    `FluxKontextPolicy` puts LoRA adapters on its transformer, while pretraining trains (and saves)
    `pipeline`'s bare transformer whole, so the policy gets a copy of the transformer; encoding never
    runs it. The VAE, text encoders, tokenizers and scheduler are `pipeline`'s own, not copies.
    """
    parts = {**pipeline.components, "transformer": copy.deepcopy(pipeline.transformer)}
    return FluxKontextPolicy(FluxKontextPipeline(**parts), device="cpu", dtype=torch.float32, size=size)


@torch.no_grad()
def _edit_conditions(pipeline: KontextPipeline, pairs: list[Pair], size: int) -> tuple[Tensor, FluxConditions]:
    """Target latents x0 and the Kontext conditions (prompts + input latents) of every pair."""
    encoder = condition_encoder(pipeline, size)
    conditions = FluxConditions.cat(
        [
            encoder.encode_conditions([p[2] for p in chunk], np.stack([p[0] for p in chunk]))
            for chunk in _chunks(pairs, ENCODE_CHUNK)
        ]
    )
    targets = pixels_from_uint8(np.stack([p[1] for p in pairs]), pipeline, size)
    return torch.cat([encode_images(pipeline, chunk) for chunk in targets.split(ENCODE_CHUNK)]), conditions


def _chunks(items: list[Pair], size: int) -> list[list[Pair]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


FLUX_KONTEXT = PretrainFamily(
    name="flux_kontext",
    build=build_tiny_kontext,
    pixels=lambda pipeline, images, size: pixels_from_uint8(images, pipeline, size),
    normalise=_normalise_flux,
    edit_data=_edit_conditions,
    velocity=_guided_velocity,
)


def fit_flow(
    pipeline: Any,
    family: PretrainFamily,
    x0: Tensor,
    conditions: EditConditions,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    schedule: LRSchedule = "constant",
) -> list[float]:
    """Flow matching of the whole transformer on (x0, conditions); returns the per-step losses.

    ``schedule``: "constant" (the Qwen recipe), or "cosine": a linear warm-up over the first 2 % of the
    steps, then cosine decay to 0, which a long run needs to settle into the fine detail (the copied
    background) that a constant rate keeps stepping over.
    """
    transformer = pipeline.transformer
    transformer.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=lr, weight_decay=0.0)
    rate = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, schedule=schedule, steps=steps))
    losses: list[float] = []
    for _ in range(steps):
        index = torch.randint(len(x0), (batch_size,), generator=generator)
        clean, cond = x0[index], conditions.select(index)
        noise = torch.randn(clean.shape, generator=generator)
        t = torch.sigmoid(torch.randn(batch_size, generator=generator))
        x_t = (1 - t[:, None, None]) * clean + t[:, None, None] * noise
        velocity = family.velocity(pipeline, x_t, t, cond, generator).float()
        loss = torch.nn.functional.mse_loss(velocity, noise - clean)
        losses.append(_step(optimizer, transformer.parameters(), loss))
        rate.step()
    transformer.eval().requires_grad_(False)
    return losses


def lr_factor(step: int, *, schedule: LRSchedule, steps: int) -> float:
    """The learning rate's multiplier at ``step`` of ``steps`` (see ``fit_flow``)."""
    if schedule == "constant":
        return 1.0
    warmup = max(1, steps // 50)
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))


def pretrain_tiny(
    pairs: Iterable[Pair] | Iterable[Any],
    out_dir: Path,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    size: int = 64,
    vae_steps: int | None = None,
    vae_lr: float = 2e-3,
    family: PretrainFamily = FLUX_KONTEXT,
    schedule: LRSchedule = "constant",
) -> Path:
    """Pretrain `family.build(seed)` (default: `build_tiny_kontext`) on (input, target, prompt) pairs (or
    SynthPairs); save it to `out_dir`.

    `vae_steps` defaults to `steps`. Returns `out_dir`, which the family's policy `from_pretrained` loads.
    """
    data = [as_pair(item) for item in pairs]
    if not data:
        raise ValueError("no pairs to pretrain on")
    generator = torch.Generator().manual_seed(seed)
    pipeline = family.build(seed)
    vae_steps = steps if vae_steps is None else vae_steps

    started = time.perf_counter()
    images = family.pixels(pipeline, np.stack([p[0] for p in data] + [p[1] for p in data]), size)
    vae_losses = fit_vae(pipeline.vae, images, steps=vae_steps, batch_size=batch_size, lr=vae_lr, generator=generator)
    latents = family.normalise(pipeline, images)
    vae_seconds = time.perf_counter() - started

    started = time.perf_counter()
    x0, conditions = family.edit_data(pipeline, data, size)
    flow_losses = fit_flow(
        pipeline,
        family,
        x0,
        conditions,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        generator=generator,
        schedule=schedule,
    )
    flow_seconds = time.perf_counter() - started

    out_dir = Path(out_dir)
    pipeline.save_pretrained(out_dir)
    report = {
        "family": family.name,
        "pairs": len(data),
        "size": size,
        "seed": seed,
        "batch_size": batch_size,
        # Float sums are split by thread count: the same settings on another count give other weights.
        "torch_threads": torch.get_num_threads(),
        "vae": {"steps": vae_steps, "lr": vae_lr, "wall_s": round(vae_seconds, 2), "loss": _summary(vae_losses)}
        if vae_steps
        else {"steps": 0},
        "latents": latents,
        "flow": {
            "steps": steps,
            "lr": lr,
            "schedule": schedule,
            "wall_s": round(flow_seconds, 2),
            "loss": _summary(flow_losses),
        },
    }
    (out_dir / "pretrain.json").write_text(json.dumps(report, indent=2) + "\n")
    return out_dir

"""A short pretraining run: both stages lower their loss and the directory loads as a policy."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from tests.workers.squares import moving_squares
from tests.workers.tiny_policy import SIZE
from workers.policies.flux_kontext import FluxKontextPolicy
from workers.pretrain import pretrain_tiny


def test_short_pretraining_lowers_losses_and_saves_a_policy(tmp_path) -> None:
    pairs = moving_squares(12, seed=1, size=SIZE)
    # Tuples, or objects shaped like motionnft.data.synth.SynthPair.
    items = [*pairs[:6], *(SimpleNamespace(input_image=a, target_image=b, prompt=c) for a, b, c in pairs[6:])]
    out = pretrain_tiny(iter(items), tmp_path / "tiny", steps=30, vae_steps=30, batch_size=4, lr=2e-3, seed=0)
    report = json.loads((out / "pretrain.json").read_text())
    assert report["pairs"] == 12 and report["flow"]["steps"] == 30
    assert report["vae"]["loss"]["final"] < report["vae"]["loss"]["first"]
    assert report["flow"]["loss"]["final"] < report["flow"]["loss"]["first"]

    policy = FluxKontextPolicy.from_pretrained(out, size=SIZE)
    vae_config = policy.pipeline.vae.config
    assert (vae_config.shift_factor, vae_config.scaling_factor) == (
        report["latents"]["shift_factor"],
        report["latents"]["scaling_factor"],
    )
    conditions = policy.encode_conditions([pairs[0][2]], pairs[0][0][None])
    assert abs(float(conditions.image_latents.std()) - 1.0) < 0.5  # normalised latents
    images = policy.decode(policy.sample(conditions, [0], adapter=None, steps=2, guidance=2.5))
    assert images.shape == (1, SIZE, SIZE, 3)
    assert torch.is_grad_enabled()

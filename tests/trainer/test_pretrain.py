"""A short pretraining run: both stages lower their loss and the directory loads as a policy; the
conditions it learns from are the policy's own encoding, and encoding them leaves the model alone."""

from __future__ import annotations

import json
from itertools import pairwise
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.workers.squares import moving_squares
from tests.workers.tiny_policy import SIZE
from trainer.pretrain import _edit_conditions, lr_factor, pretrain_tiny
from workers.policies.flux_kontext import FluxKontextPolicy
from workers.policies.tiny import build_tiny_kontext

CONDITION_TENSORS = ("prompt_embeds", "pooled_prompt_embeds", "text_ids", "image_latents", "image_ids")


def test_short_pretraining_lowers_losses_and_saves_a_policy(tmp_path) -> None:
    pairs = moving_squares(12, seed=1, size=SIZE)
    # Tuples, or objects shaped like motionnft.data.synth.SynthPair.
    items = [*pairs[:6], *(SimpleNamespace(input_image=a, target_image=b, prompt=c) for a, b, c in pairs[6:])]
    out = pretrain_tiny(iter(items), tmp_path / "tiny", steps=30, vae_steps=30, batch_size=4, lr=2e-3, seed=0)
    report = json.loads((out / "pretrain.json").read_text())
    assert report["pairs"] == 12 and report["flow"]["steps"] == 30
    assert report["torch_threads"] == torch.get_num_threads()  # needed to reproduce the weights exactly
    assert report["vae"]["loss"]["final"] < report["vae"]["loss"]["first"]
    assert report["flow"]["loss"]["final"] < report["flow"]["loss"]["first"]
    # The whole bare transformer was trained and saved: no LoRA layers came along with the encoding.
    assert not [key for key in load_file(out / "transformer" / "diffusion_pytorch_model.safetensors") if "lora" in key]

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


def test_pretraining_learns_from_the_policys_own_conditions() -> None:
    pairs = moving_squares(5, seed=2, size=SIZE)
    pipeline = build_tiny_kontext(3)
    before = {key: value.clone() for key, value in pipeline.transformer.state_dict().items()}
    x0, conditions = _edit_conditions(pipeline, pairs, SIZE)
    after = pipeline.transformer.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[key], after[key]) for key in before)

    rollout = FluxKontextPolicy(build_tiny_kontext(3), size=SIZE)  # as a rollout actor encodes them
    expected = rollout.encode_conditions([p[2] for p in pairs], np.stack([p[0] for p in pairs]))
    for name in CONDITION_TENSORS:
        assert torch.equal(getattr(conditions, name), getattr(expected, name)), name
    assert conditions.latent_shape == expected.latent_shape
    assert x0.shape == conditions.image_latents.shape


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    factors = [lr_factor(step, schedule="cosine", steps=1000) for step in range(1000)]
    assert factors[0] == pytest.approx(1 / 20) and factors[19] == pytest.approx(1.0)  # 2 % warm-up
    assert factors[20] == pytest.approx(1.0) and factors[510] == pytest.approx(0.5, abs=0.01)
    assert factors[-1] == pytest.approx(0.0, abs=1e-4) and all(a >= b for a, b in pairwise(factors[20:]))
    assert {lr_factor(step, schedule="constant", steps=10) for step in range(10)} == {1.0}


def test_pretraining_with_the_cosine_schedule_is_deterministic(tmp_path) -> None:
    pairs = moving_squares(6, seed=4, size=SIZE)
    weights = []
    for run in ("a", "b"):
        out = pretrain_tiny(pairs, tmp_path / run, steps=12, vae_steps=4, batch_size=4, lr=2e-3, seed=0,
                            schedule="cosine")  # fmt: skip
        assert json.loads((out / "pretrain.json").read_text())["flow"]["schedule"] == "cosine"
        weights.append((out / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes())
    assert weights[0] == weights[1]

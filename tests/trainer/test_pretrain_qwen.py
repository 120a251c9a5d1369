"""A short Qwen-Image-Edit pretraining: both stages lower their loss, the same settings give the same
bytes, the directory loads as either variant, and it learns from the policy's own conditions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from tests.workers.squares import moving_squares
from tests.workers.tiny_policy import SIZE
from trainer.pretrain_qwen import edit_data, pretrain_tiny_qwen
from workers.policies.qwen_image_edit import QwenImageEditPolicy
from workers.policies.tiny_qwen import build_tiny_qwen_image_edit

SETTINGS = {"steps": 15, "vae_steps": 12, "batch_size": 4, "lr": 2e-3, "seed": 0}


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return {
        f"{f.parent.name}.{k}": v for f in sorted(directory.rglob("*.safetensors")) for k, v in load_file(f).items()
    }


def test_short_pretraining_lowers_losses_reproduces_and_saves_a_policy(tmp_path: Path) -> None:
    pairs = moving_squares(6, seed=1, size=SIZE)
    out = pretrain_tiny_qwen(iter(pairs), tmp_path / "a", **SETTINGS)
    report = json.loads((out / "pretrain.json").read_text())
    assert report["family"] == "qwen_image_edit" and report["pairs"] == 6
    assert report["vae"]["loss"]["final"] < report["vae"]["loss"]["first"]
    assert report["flow"]["loss"]["final"] < report["flow"]["loss"]["first"]

    again = pretrain_tiny_qwen(iter(pairs), tmp_path / "b", **SETTINGS)  # the same command, the same bytes
    a, b = _weights(out), _weights(again)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert not [key for key in a if "lora" in key]  # the bare transformer was trained and saved

    for variant in ("edit", "edit-plus"):
        policy = QwenImageEditPolicy.from_pretrained(out, variant=variant, size=SIZE)
        assert list(policy.pipeline.vae.config.latents_mean) == report["latents"]["latents_mean"]
        conditions = policy.encode_conditions([pairs[0][2]], pairs[0][0][None])
        assert abs(float(conditions.image_latents.std()) - 1.0) < 0.5  # normalised latents
        assert policy.decode(policy.sample(conditions, [0], adapter=None, steps=2)).shape == (1, SIZE, SIZE, 3)
    assert torch.is_grad_enabled()


def test_pretraining_learns_from_the_policys_own_conditions() -> None:
    pairs = moving_squares(3, seed=2, size=SIZE)
    pipeline = build_tiny_qwen_image_edit(3)
    before = {key: value.clone() for key, value in pipeline.transformer.state_dict().items()}
    x0, conditions = edit_data(pipeline, pairs, SIZE)
    after = pipeline.transformer.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[key], after[key]) for key in before)

    rollout = QwenImageEditPolicy(build_tiny_qwen_image_edit(3), size=SIZE)  # as a rollout actor encodes them
    expected = rollout.encode_conditions([p[2] for p in pairs], np.stack([p[0] for p in pairs]))
    for name in ("prompt_embeds", "prompt_mask", "image_latents"):
        assert torch.equal(getattr(conditions, name), getattr(expected, name)), name
    assert x0.shape == conditions.image_latents.shape

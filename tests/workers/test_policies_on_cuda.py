"""Every policy family's tiny model on CUDA in bf16: encoders offloaded, sampling, the batched
old/reference pass, and one learner epoch with gradient checkpointing (benchmarks/gpu_learner.sh)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.workers.tiny_policy import VISIBLE_LORA, edit_inputs
from trainer.config import NFTConfig, OptimConfig
from trainer.learner import Learner
from workers.policies.base import TRAINABLE
from workers.policies.factory import FAMILIES, PolicySpec, build_policy
from workers.tasks import TrainingGroup

pytestmark = pytest.mark.gpu
SIZE = 64
K = 2


def _spec(family: str, **changes) -> PolicySpec:
    guidance = 2.5 if family == "flux_kontext" else None  # Qwen-Image-Edit takes none
    return PolicySpec(family=family, dtype="bfloat16", device="cuda", gradient_checkpointing=True,
                      lora=VISIBLE_LORA, guidance=guidance, **changes)  # fmt: skip


def _devices(module: torch.nn.Module) -> set[str]:
    return {p.device.type for p in module.parameters()}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_offloaded_encoders_visit_the_device_only_to_encode(family: str) -> None:
    policy = build_policy(_spec(family), size=SIZE)
    resident = build_policy(_spec(family, offload_encoders=False), size=SIZE)
    encoders = policy.encoders  # type: ignore[attr-defined]
    assert _devices(policy.transformer) == {"cuda"}  # type: ignore[attr-defined]
    assert all(_devices(part) == {"cpu"} for part in encoders)
    assert all(_devices(part) == {"cuda"} for part in resident.encoders)  # type: ignore[attr-defined]
    prompts, images = edit_inputs(1)
    conditions = policy.encode_conditions(prompts, images)
    expected = resident.encode_conditions(prompts, images)
    torch.testing.assert_close(conditions.image_latents, expected.image_latents)  # type: ignore[attr-defined]
    torch.testing.assert_close(conditions.prompt_embeds, expected.prompt_embeds)  # type: ignore[attr-defined]
    guidance = 2.5 if family == "flux_kontext" else 0.0
    latents = policy.sample(conditions, [1, 2], steps=3, guidance=guidance)
    decoded = policy.decode(latents)
    assert decoded.shape == (2, SIZE, SIZE, 3) and decoded.dtype == np.uint8
    assert all(_devices(part) == {"cpu"} for part in encoders)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_learner_epoch_on_cuda_in_bf16(family: str) -> None:
    spec = _spec(family)
    learner = Learner(spec, OptimConfig(timesteps_per_sample=2), NFTConfig(), size=SIZE, seed=0)
    policy = learner.policy
    assert all(_devices(part) == {"cpu"} for part in policy.encoders)  # type: ignore[attr-defined]
    prompts, images = edit_inputs(1)
    conditions = policy.encode_conditions(prompts, images)
    latents = policy.sample(conditions, list(range(K)), steps=spec.sampling_steps, guidance=learner.guidance)
    assert latents.is_cuda and torch.isfinite(latents).all()

    repeated = conditions.repeat(K)
    x_t, t = torch.randn_like(latents), torch.full((K,), 0.5, device="cuda")
    v_old, v_ref = policy.old_and_reference_velocity(x_t, t, repeated, guidance=learner.guidance)
    with torch.no_grad():
        old = policy.velocity(x_t, t, repeated, adapter="old", guidance=learner.guidance)
        reference = policy.velocity(x_t, t, repeated, adapter=None, guidance=learner.guidance)
    scale = float(reference.abs().max())
    torch.testing.assert_close(v_old, old, rtol=0, atol=0.05 * scale)  # bf16: one rounding per LoRA layer apart
    torch.testing.assert_close(v_ref, reference, rtol=0, atol=0.05 * scale)

    before = policy.adapter_state(TRAINABLE)
    group = TrainingGroup("p0", list(range(K)), latents.cpu(), conditions.cpu(), 0)
    metrics = learner.train_epoch([group], torch.tensor([[1.0, 0.0]]), torch.tensor([True]), epoch=0)
    assert metrics["optimizer_steps"] == 2.0 and all(np.isfinite(list(metrics.values())))
    after = policy.adapter_state(TRAINABLE)
    assert any(not torch.equal(before[key], after[key]) for key in before)
    assert {p.dtype for p in policy.trainable_parameters()} == {torch.float32}

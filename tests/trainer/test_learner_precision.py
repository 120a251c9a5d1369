"""The learner on a bf16 policy with gradient checkpointing, on the CPU: LoRA, grads and AdamW stay float32."""

from __future__ import annotations

import torch

from tests.workers.tiny_policy import SIZE, VISIBLE_LORA, edit_inputs
from trainer.config import NFTConfig, OptimConfig
from trainer.learner import Learner
from workers.policies.base import TRAINABLE
from workers.policies.factory import PolicySpec
from workers.tasks import TrainingGroup

K = 2


def test_a_bf16_checkpointed_learner_trains_float32_lora() -> None:
    spec = PolicySpec(dtype="bfloat16", gradient_checkpointing=True, lora=VISIBLE_LORA)
    learner = Learner(spec, OptimConfig(timesteps_per_sample=2), NFTConfig(), size=SIZE, seed=0)
    policy = learner.policy
    assert policy.pipeline.transformer.dtype == torch.bfloat16  # type: ignore[attr-defined]
    assert policy.pipeline.transformer.is_gradient_checkpointing  # type: ignore[attr-defined]
    prompts, images = edit_inputs(1)
    conditions = policy.encode_conditions(prompts, images).cpu()
    latents = policy.sample(conditions, list(range(K)), steps=spec.sampling_steps, guidance=2.5).cpu()
    before = policy.adapter_state(TRAINABLE)

    metrics = learner.train_epoch(
        [TrainingGroup("p0", list(range(K)), latents, conditions, 0)],
        torch.tensor([[1.0, 0.0]]),
        torch.tensor([True]),
        epoch=0,
    )

    assert metrics["optimizer_steps"] == 2.0
    assert all(torch.isfinite(torch.tensor(value)) for value in metrics.values()), metrics
    assert metrics["kl"] > 0  # random LoRA init: default differs from the base from the start
    after = policy.adapter_state(TRAINABLE)
    assert any(not torch.equal(before[key], after[key]) for key in before)
    assert {value.dtype for value in after.values()} == {torch.float32}
    moments = [t for state in learner.optimizer.state.values() for t in state.values() if t.dim() > 0]
    assert moments and {t.dtype for t in moments} == {torch.float32}

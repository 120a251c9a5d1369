"""The learner's update without Ray: a few NFT steps on the tiny policy, the `old` blend, and state."""

from __future__ import annotations

import torch

from tests.workers.tiny_policy import SIZE, edit_inputs, tiny_policy
from trainer.config import NFTConfig, OptimConfig
from trainer.learner import Learner
from workers.policies.base import SAMPLING, TRAINABLE
from workers.policies.factory import PolicySpec
from workers.tasks import TrainingGroup

K = 3


def learner(seed: int = 0) -> Learner:
    optim = OptimConfig(timesteps_per_sample=2, old_decay_rate=0.25)
    return Learner(PolicySpec(), optim, NFTConfig(), size=SIZE, seed=seed, policy_factory=tiny_policy)


def groups(policy_learner: Learner, n: int = 2) -> list[TrainingGroup]:
    prompts, images = edit_inputs(n)
    out = []
    for i in range(n):
        conditions = policy_learner.policy.encode_conditions([prompts[i]], images[i : i + 1]).cpu()
        latents = policy_learner.policy.sample(conditions, [i * 10 + k for k in range(K)], steps=6, guidance=2.5)
        out.append(TrainingGroup(f"p{i}", list(range(K)), latents.cpu(), conditions, 0))
    return out


def test_an_epoch_trains_default_only_then_blends_old_toward_it() -> None:
    learn = learner()
    data = groups(learn)
    default0, old0 = learn.policy.adapter_state(TRAINABLE), learn.policy.adapter_state(SAMPLING)
    weights = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.9, 0.5]])
    metrics = learn.train_epoch(data, weights, torch.tensor([True, True]))
    assert metrics["optimizer_steps"] == 4.0 and all(map(torch.isfinite, map(torch.tensor, metrics.values())))
    default1 = learn.policy.adapter_state(TRAINABLE)
    assert any(not torch.equal(default0[k], default1[k]) for k in default0)
    assert all(torch.equal(old0[k], v) for k, v in learn.policy.adapter_state(SAMPLING).items())  # untouched
    version, old1 = learn.end_epoch()
    decay = min(0.25 * 4, 0.5)
    assert version == 1
    for name in old1:
        assert torch.allclose(old1[name], decay * old0[name] + (1 - decay) * default1[name], atol=1e-6)
    ema_version, ema = learn.ema_sampling()
    assert ema_version == -1 and set(ema) == set(default1)


def test_masked_groups_train_nothing() -> None:
    learn = learner()
    before = learn.policy.adapter_state(TRAINABLE)
    learn.train_epoch(groups(learn, 1), torch.ones(1, K), torch.tensor([False]))
    kl_only = learn.policy.adapter_state(TRAINABLE)
    # Only the KL term (1e-4, zero at the start: default == base) reaches an invalid group.
    assert all(torch.allclose(before[k], kl_only[k], atol=1e-6) for k in before)


def test_state_round_trips_bit_exactly() -> None:
    first = learner()
    data = groups(first)
    weights, valid = torch.full((2, K), 0.7), torch.tensor([True, True])
    first.train_epoch(data, weights, valid)
    first.end_epoch()
    second = learner(seed=99)
    second.load_state_dict(first.state_dict())
    first.train_epoch(data, weights, valid)
    second.train_epoch(data, weights, valid)
    a, b = first.policy.adapter_state(TRAINABLE), second.policy.adapter_state(TRAINABLE)
    assert all(torch.equal(a[k], b[k]) for k in a)

"""The learner's update without Ray: a few NFT steps on the tiny policy, the `old` blend, micro-batches,
the epoch's plan, and state."""

from __future__ import annotations

import pytest
import torch

from tests.workers.tiny_policy import SIZE, edit_inputs, tiny_policy
from trainer.config import NFTConfig, OptimConfig
from trainer.distributed import share
from trainer.learner import Learner, seeded_generator, update_plan
from workers.policies.base import SAMPLING, TRAINABLE
from workers.policies.factory import PolicySpec
from workers.tasks import TrainingGroup

K = 3


def learner(seed: int = 0, **optim: object) -> Learner:
    settings = OptimConfig(**{"timesteps_per_sample": 2, "old_decay_rate": 0.25, **optim})  # type: ignore[arg-type]
    return Learner(PolicySpec(), settings, NFTConfig(), size=SIZE, seed=seed, policy_factory=tiny_policy)


@pytest.fixture(scope="module")
def data() -> list[TrainingGroup]:
    """Two groups of K samples, drawn once by the tiny policy (every learner here builds the same one)."""
    policy = tiny_policy()
    prompts, images = edit_inputs(2)
    out = []
    for i in range(2):
        conditions = policy.encode_conditions([prompts[i]], images[i : i + 1]).cpu()
        latents = policy.sample(conditions, [i * 10 + k for k in range(K)], steps=6, guidance=2.5)
        out.append(TrainingGroup(f"p{i}", list(range(K)), latents.cpu(), conditions, 0))
    return out


def test_an_epoch_trains_default_only_then_blends_old_toward_it(data: list[TrainingGroup]) -> None:
    learn = learner()
    default0, old0 = learn.policy.adapter_state(TRAINABLE), learn.policy.adapter_state(SAMPLING)
    weights = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.9, 0.5]])
    metrics = learn.train_epoch(data, weights, torch.tensor([True, True]), epoch=0)
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


def test_masked_groups_train_nothing(data: list[TrainingGroup]) -> None:
    learn = learner()
    before = learn.policy.adapter_state(TRAINABLE)
    learn.train_epoch(data[:1], torch.ones(1, K), torch.tensor([False]), epoch=0)
    kl_only = learn.policy.adapter_state(TRAINABLE)
    # Only the KL term (1e-4, zero at the start: default == base) reaches an invalid group.
    assert all(torch.allclose(before[k], kl_only[k], atol=1e-6) for k in before)


def test_micro_batches_accumulate_the_whole_groups_gradient(data: list[TrainingGroup]) -> None:
    weights, valid = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.9, 0.5]]), torch.tensor([True, True])
    whole, split = learner(), learner(micro_batch=2)  # K = 3: micro-batches of 2 and 1
    a = whole.train_epoch(data, weights, valid, epoch=0)
    b = split.train_epoch(data, weights, valid, epoch=0)
    for key in ("loss", "kl", "grad_norm"):
        assert b[key] == pytest.approx(a[key], rel=1e-4), key
    wa, wb = whole.policy.adapter_state(TRAINABLE), split.policy.adapter_state(TRAINABLE)
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5


def test_state_round_trips_bit_exactly(data: list[TrainingGroup]) -> None:
    first = learner()
    weights, valid = torch.full((2, K), 0.7), torch.tensor([True, True])
    first.train_epoch(data, weights, valid, epoch=0)
    first.end_epoch()
    second = learner()  # a resumed run: the same seed, the checkpoint's state
    second.load_state_dict(first.state_dict())
    first.train_epoch(data, weights, valid, epoch=1)
    second.train_epoch(data, weights, valid, epoch=1)
    a, b = first.policy.adapter_state(TRAINABLE), second.policy.adapter_state(TRAINABLE)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_noise_is_a_function_of_seed_epoch_group_and_timestep() -> None:
    def draw(*key: int) -> torch.Tensor:
        return torch.randn(4, generator=seeded_generator(*key))

    assert torch.equal(draw(0, 1, 2, 3), draw(0, 1, 2, 3))  # in any process, whatever was drawn before
    keys = [(0, 1, 2, 3), (1, 1, 2, 3), (0, 2, 2, 3), (0, 1, 3, 3), (0, 1, 2, 4)]
    draws = [draw(*key) for key in keys]
    assert all(not torch.equal(a, b) for i, a in enumerate(draws) for b in draws[i + 1 :])


@pytest.mark.parametrize(("groups", "positions", "grad_accum"), [(3, 2, 1), (5, 3, 2), (4, 5, 4), (1, 1, 3)])
def test_the_plan_is_every_micro_step_once_dealt_evenly_over_the_ranks(
    groups: int, positions: int, grad_accum: int
) -> None:
    plan = update_plan(groups, positions, grad_accum)
    units = [unit for step in plan for unit in step]
    assert sorted(units) == sorted((g, p) for g in range(groups) for p in range(positions))
    assert all(len(step) == grad_accum for step in plan[:-1]) and 0 < len(plan[-1]) <= grad_accum
    for world in (1, 2, 3):
        for step in plan:
            shares = [share(step, rank, world) for rank in range(world)]
            assert sorted(u for s in shares for u in s) == sorted(step)
            assert max(map(len, shares)) - min(map(len, shares)) <= 1

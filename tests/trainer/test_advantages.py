"""Tests of trainer.advantages: group normalisation by hand, clipping, weights, banning, BanList."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.advantages import (
    BanList,
    combine_rewards,
    group_advantages,
    optimality_weight,
    reward_agreement,
    saturated,
)


def test_group_normalisation_by_hand() -> None:
    # Group means: 0.4 and 0.8. All six rewards: mean 0.6, deviations -0.4 -0.2 0 0.2 0.2 0.2,
    # squares sum 0.32, population variance 0.32 / 6, global std sqrt(0.0533...) = 0.23094.
    # Row 0: (r - 0.4) / (0.23094 + 1e-4) = (-0.2, 0, 0.2) / 0.23104; row 1: all 0.
    rewards = torch.tensor([[0.2, 0.4, 0.6], [0.8, 0.8, 0.8]])
    adv = group_advantages(rewards)
    std = math.sqrt(0.32 / 6)
    a = 0.2 / (std + 1e-4)
    torch.testing.assert_close(adv.advantage, torch.tensor([[-a, 0.0, a], [0.0, 0.0, 0.0]]))
    # weight = A / 5 / 2 + 0.5
    torch.testing.assert_close(adv.weight, torch.tensor([[0.5 - a / 10, 0.5, 0.5 + a / 10], [0.5, 0.5, 0.5]]))
    torch.testing.assert_close(adv.group_mean, torch.tensor([0.4, 0.8]))
    torch.testing.assert_close(adv.group_std, torch.tensor([math.sqrt(0.08 / 3), 0.0]))
    assert adv.global_std.item() == pytest.approx(std)


def test_clipping_at_five() -> None:
    # One success among 30: p = 1/30, population std sqrt(p (1 - p)) = sqrt(29) / 30 = 0.1795;
    # the success's advantage (1 - 1/30) / 0.1796 = 5.38 is clipped to 5 (weight 1); the failures
    # get -(1/30) / 0.1796 = -0.1856 (weight 0.4814).
    rewards = torch.zeros(1, 30)
    rewards[0, 0] = 1.0
    adv = group_advantages(rewards)
    assert adv.advantage[0, 0].item() == 5.0
    assert adv.weight[0, 0].item() == 1.0
    expected = -(1 / 30) / (math.sqrt(29) / 30 + 1e-4)
    assert adv.advantage[0, 1].item() == pytest.approx(expected, rel=1e-5)
    assert adv.weight[0, 1].item() == pytest.approx(expected / 10 + 0.5, rel=1e-5)
    assert group_advantages(rewards, clip=2.0).advantage[0, 0].item() == 2.0


def test_weight_mapping() -> None:
    a = torch.tensor([-7.0, -5.0, -2.5, 0.0, 2.5, 5.0, 7.0])
    torch.testing.assert_close(optimality_weight(a), torch.tensor([0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]))
    with pytest.raises(ValueError):
        optimality_weight(a, clip=0.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=16))
def test_weight_in_unit_interval_and_monotone(values: list[float]) -> None:
    a = torch.tensor(sorted(values), dtype=torch.float64)
    w = optimality_weight(a)
    assert bool(((w >= 0) & (w <= 1)).all())
    assert bool((w[1:] >= w[:-1]).all())


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda g: st.lists(st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4), min_size=g, max_size=g)
    )
)
def test_advantages_are_bounded_and_centred(rows: list[list[float]]) -> None:
    rewards = torch.tensor(rows, dtype=torch.float64)
    adv = group_advantages(rewards)
    assert bool((adv.advantage.abs() <= 5).all())
    assert bool(((adv.weight >= 0) & (adv.weight <= 1)).all())
    unclipped = (adv.advantage.abs() < 5).all(dim=1)
    # Centred per group wherever nothing was clipped.
    assert torch.allclose(adv.advantage.sum(dim=1)[unclipped], torch.zeros(1, dtype=torch.float64), atol=1e-6)


def test_dropped_groups_are_ignored() -> None:
    rewards = torch.tensor([[0.2, 0.4, 0.6], [math.nan, 0.1, math.nan], [0.8, 0.8, 0.8]])
    valid = torch.tensor([True, False, True])
    adv = group_advantages(rewards, valid)
    alone = group_advantages(rewards[valid])
    torch.testing.assert_close(adv.advantage[valid], alone.advantage)
    assert torch.equal(adv.advantage[1], torch.zeros(3))
    assert torch.equal(adv.weight[1], torch.full((3,), 0.5))
    assert math.isnan(adv.group_mean[1].item()) and math.isnan(adv.group_std[1].item())
    assert torch.equal(adv.valid, valid)
    none_valid = group_advantages(rewards, torch.zeros(3, dtype=torch.bool))
    assert torch.equal(none_valid.weight, torch.full((3, 3), 0.5))


def test_bad_rewards_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        group_advantages(torch.tensor([[0.1, math.nan]]))
    with pytest.raises(ValueError, match="G, K"):
        group_advantages(torch.ones(4))
    with pytest.raises(ValueError, match="bool"):
        group_advantages(torch.ones(2, 2), torch.ones(2))


def test_banning_rule() -> None:
    rewards = torch.tensor(
        [
            [0.95] * 8,  # std 0 < 0.05, mean 0.95 > 0.9: ban
            [1.0, 0.88] * 4,  # std 0.06 (not < 0.05), mean 0.94: keep
            [0.9] * 8,  # mean 0.9 (not > 0.9): keep
            [0.2] * 8,  # saturated at a low reward: keep (nothing learnt, but not solved)
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.96],  # std 0.013, mean 0.995: ban
        ],
        dtype=torch.float64,
    )
    assert saturated(rewards).tolist() == [True, False, False, False, True]
    # Exactly on the mean threshold in float32 (0.5 * 1.0 + 0.5 * 0.8): not banned either.
    assert not saturated(0.5 * torch.ones(1, 8) + 0.5 * torch.full((1, 8), 0.8)).item()
    valid = torch.tensor([False, True, True, True, True])
    assert saturated(rewards, valid=valid).tolist() == [False, False, False, False, True]
    assert saturated(rewards, std_threshold=0.07).tolist() == [True, True, False, False, True]


def test_combine_rewards() -> None:
    motion = torch.tensor([[0.2, 1.0]])
    judge = torch.tensor([[0.6, math.nan]])
    combined = combine_rewards({"motion": motion, "judge": judge}, {"motion": 0.5, "judge": 0.5})
    assert combined[0, 0].item() == pytest.approx(0.4)
    assert math.isnan(combined[0, 1].item())  # a missing score stays missing, never 0
    only = combine_rewards({"motion": motion}, {"motion": 1.0})
    assert torch.equal(only, motion)
    with pytest.raises(ValueError, match="differ"):
        combine_rewards({"motion": motion}, {"motion": 0.5, "judge": 0.5})
    with pytest.raises(ValueError, match="differ"):
        combine_rewards({"motion": motion, "judge": judge}, {"motion": 1.0})
    with pytest.raises(ValueError, match="shape"):
        combine_rewards({"motion": motion, "judge": judge[:, :1]}, {"motion": 0.5, "judge": 0.5})
    with pytest.raises(ValueError):
        combine_rewards({}, {})


def test_ban_list() -> None:
    bans = BanList()
    assert bans.update(["a", "b", "c"], torch.tensor([True, False, True])) == ["a", "c"]
    assert bans.update(["a", "b"], [True, True]) == ["b"]  # only the new ones
    assert "b" in bans and "z" not in bans and len(bans) == 3
    assert bans.mask(["z", "a"]).tolist() == [False, True]
    restored = BanList.from_list(bans.to_list())
    assert restored == bans and restored.to_list() == ["a", "b", "c"] and list(restored) == ["a", "b", "c"]
    with pytest.raises(ValueError):
        bans.update(["a"], [True, False])
    with pytest.raises(ValueError):
        BanList([""])


def test_reward_agreement_by_hand() -> None:
    rewards = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.8, 0.5], [0.5, 0.5, 0.5]])
    mas = torch.tensor([[90.0, 60.0, 30.0], [70.0, 10.0, 40.0], [20.0, 40.0, 60.0]])
    out = reward_agreement(rewards, mas)
    assert out["mas"] == pytest.approx(420 / 9)
    # Group 0's best edit by reward has MAS 90 (mean 60): +30; group 1's has 10 (mean 40): -30; group 2's
    # rewards tie, so its first edit counts: 20 - 40 = -20.
    assert out["best_mas_gain"] == pytest.approx((30 - 30 - 20) / 3)
    # Group 0 agrees exactly, group 1 exactly the wrong way; group 2 (constant reward) is left out.
    assert out["reward_mas_corr"] == pytest.approx(0.0, abs=1e-12)
    assert reward_agreement(rewards[:1], mas[:1])["reward_mas_corr"] == pytest.approx(1.0)


def test_reward_agreement_without_spread_has_no_correlation_and_checks_shapes() -> None:
    same = reward_agreement(torch.full((2, 4), 0.7), torch.full((2, 4), 55.0))
    assert same == {"mas": 55.0, "best_mas_gain": 0.0}
    with pytest.raises(ValueError, match="same non-empty"):
        reward_agreement(torch.zeros(2, 4), torch.zeros(2, 3))

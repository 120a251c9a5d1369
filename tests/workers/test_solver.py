"""The Heun sampler on fields with known solutions: exact on straight lines, second order on curves."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from workers.policies.solver import heun_sample, seeded_noise

SHIFTED_GRID = [1.0, 0.8886, 0.7614, 0.6148, 0.4438, 0.2420, 0.0]


@pytest.mark.parametrize("grid", [SHIFTED_GRID, [1.0, 0.5, 0.0], [1.0, 0.0]])
def test_straight_line_flow_lands_exactly_on_x0(grid: list[float]) -> None:
    x0 = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(1))
    noise = seeded_noise([7, 8, 9], (5, 4))
    # The exact velocity of x_t = (1 - t) x0 + t n, written as a field of (x, t): v = (x - x0) / t = n - x0.
    calls: list[float] = []

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        calls.append(t)
        return (x - x0) / t

    result = heun_sample(velocity, noise, grid)
    torch.testing.assert_close(result, x0, atol=1e-5, rtol=0)
    assert 0.0 not in calls  # the last step onto t = 0 is Euler
    assert len(calls) == 2 * (len(grid) - 1) - 1


def _curved_error(steps: int) -> float:
    # dx/dt = x cos(3t): x(t) = x(1) exp((sin 3t - sin 3) / 3), so x(0) = x(1) exp(-sin(3) / 3).
    x1 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    grid = [1.0 - i / steps for i in range(steps + 1)]
    result = heun_sample(lambda x, t: x.double() * math.cos(3 * t), x1, grid)
    exact = x1 * math.exp(-math.sin(3.0) / 3)
    return float((result.double() - exact).abs().max())


def test_second_order_convergence_on_a_curved_field() -> None:
    errors = [_curved_error(n) for n in (16, 32, 64)]
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(1.8 < order < 2.3 for order in orders), (errors, orders)


def test_noise_rows_depend_only_on_their_seed() -> None:
    together = seeded_noise([1, 2], (3, 4))
    torch.testing.assert_close(together[0], seeded_noise([1], (3, 4))[0], rtol=0, atol=0)
    torch.testing.assert_close(together[1], seeded_noise([2], (3, 4))[0], rtol=0, atol=0)
    assert not torch.equal(together[0], together[1])


@pytest.mark.parametrize("grid", [[1.0], [0.5, 0.5, 0.0], [0.0, 1.0]])
def test_grid_must_decrease(grid: list[float]) -> None:
    with pytest.raises(ValueError):
        heun_sample(lambda x, t: x, torch.zeros(1, 2), grid)

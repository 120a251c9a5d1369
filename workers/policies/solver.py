"""A deterministic second-order (Heun) sampler for flow-matching models: a pure function of a velocity.

Convention: x_t = (1 - t) x0 + t n, v = dx/dt = n - x0, time runs from t = 1 (noise) to t = 0 (clean).
On a grid t_0 > t_1 > ... > t_S = 0 each step is Heun's method (explicit trapezoid):

    x_pred   = x_t + (t_next - t) v(x_t, t)
    x_t_next = x_t + (t_next - t) (v(x_t, t) + v(x_pred, t_next)) / 2

except the last step onto t = 0, which is Euler (as in EDM's sampler): models are not trained at t = 0
exactly, and one Euler step of size h keeps the global error O(h^2). So S steps cost 2 S - 1 velocity
evaluations (11 for the 6-step rollout). A straight-line field (v constant along the path, as for a
single known x0) is integrated exactly.

Initial noise comes from one CPU `torch.Generator` per seed, so a sample depends only on its own seed:
not on the device, nor on which other seeds share its batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Velocity = Callable[[Tensor, float], Tensor]


def seeded_noise(seeds: Sequence[int], shape: Sequence[int]) -> Tensor:
    """Standard normal float32 noise (len(seeds), *shape) on the CPU, row i drawn from `seeds[i]` alone."""
    rows = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed)) for seed in seeds]
    return torch.stack(rows)


def heun_sample(velocity: Velocity, noise: Tensor, grid: Sequence[float]) -> Tensor:
    """Integrate dx/dt = velocity(x, t) from x(grid[0]) = noise down the decreasing `grid` (ending at 0).

    Works in float32 whatever `velocity` returns; returns the state at grid[-1].
    """
    times = [float(t) for t in grid]
    if len(times) < 2 or any(b >= a for a, b in itertools.pairwise(times)):
        raise ValueError(f"the grid must decrease and hold at least two times, got {times}")
    x = noise.float()
    for t, t_next in itertools.pairwise(times):
        h = t_next - t
        v = velocity(x, t).float()
        x_pred = x + h * v
        if t_next == 0.0:  # the last step, onto clean data: Euler
            x = x_pred
            continue
        v_next = velocity(x_pred, t_next).float()
        x = x + h * 0.5 * (v + v_next)
    return x

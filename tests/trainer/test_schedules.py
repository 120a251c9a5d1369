"""Tests of trainer.schedules: the old-policy decay, blend_, and the EMA."""

from __future__ import annotations

import pytest
import torch

from trainer.schedules import EMA, blend_, old_decay


@pytest.mark.parametrize(("step", "expected"), [(0, 0.0), (100, 0.1), (499, 0.499), (500, 0.5), (1000, 0.5)])
def test_old_decay_values(step: int, expected: float) -> None:
    assert old_decay(step) == pytest.approx(expected)


def test_old_decay_custom_and_refused() -> None:
    assert old_decay(10, rate=0.01, cap=0.2) == pytest.approx(0.1)
    assert old_decay(30, rate=0.01, cap=0.2) == pytest.approx(0.2)
    for bad in ({"step": -1}, {"step": 1.5}, {"step": 1, "rate": -0.1}, {"step": 1, "cap": 1.5}):
        with pytest.raises(ValueError):
            old_decay(**bad)


def test_blend_by_name_and_by_position() -> None:
    # decay 0.25: 0.25 * [1, 2] + 0.75 * [5, 6] = [4, 5]
    target = {"a": torch.tensor([1.0, 2.0])}
    blend_(target, {"a": torch.tensor([5.0, 6.0])}, 0.25)
    assert torch.equal(target["a"], torch.tensor([4.0, 5.0]))
    params = [torch.nn.Parameter(torch.tensor([2.0])), torch.nn.Parameter(torch.tensor([0.0]))]
    blend_(params, [torch.tensor([4.0]), torch.tensor([8.0])], 0.5)  # in place, even on leaf parameters
    assert params[0].item() == 3.0 and params[1].item() == 4.0
    blend_(params, [torch.tensor([9.0]), torch.tensor([9.0])], 0.0)  # decay 0 copies
    assert params[0].item() == params[1].item() == 9.0


def test_blend_refuses_mismatches() -> None:
    a = {"a": torch.zeros(2)}
    with pytest.raises(ValueError, match="names"):
        blend_(a, {"b": torch.zeros(2)}, 0.5)
    with pytest.raises(ValueError, match="shape"):
        blend_(a, {"a": torch.zeros(3)}, 0.5)
    with pytest.raises(ValueError):
        blend_([torch.zeros(1)], [torch.zeros(1), torch.zeros(1)], 0.5)
    with pytest.raises(TypeError):
        blend_(a, [torch.zeros(2)], 0.5)
    with pytest.raises(ValueError):
        blend_(a, a, 1.5)


def test_ema_first_update_copies_then_blends() -> None:
    weights = {"w": torch.tensor([1.0, 2.0])}
    ema = EMA()
    assert ema.decay == 0.9
    ema.update(weights)
    weights["w"].add_(10.0)  # the shadow is a copy, not a view
    assert torch.equal(ema.shadow["w"], torch.tensor([1.0, 2.0]))
    ema.update(weights)  # 0.9 * [1, 2] + 0.1 * [11, 12] = [2, 3]
    torch.testing.assert_close(ema.shadow["w"], torch.tensor([2.0, 3.0]))
    assert ema.num_updates == 2


def test_ema_state_round_trip_and_copy_to() -> None:
    ema = EMA(0.5)
    ema.update({"w": torch.tensor([0.0]), "b": torch.tensor([4.0])})
    ema.update({"w": torch.tensor([2.0]), "b": torch.tensor([0.0])})
    state = ema.state_dict()
    restored = EMA()
    restored.load_state_dict(state)
    assert restored.decay == 0.5 and restored.num_updates == 2
    assert {k: v.tolist() for k, v in restored.shadow.items()} == {"w": [1.0], "b": [2.0]}
    state["shadow"]["w"].fill_(99.0)  # the state is a copy too
    assert ema.shadow["w"].item() == 1.0
    params = {"w": torch.nn.Parameter(torch.zeros(1, dtype=torch.bfloat16)), "b": torch.nn.Parameter(torch.zeros(1))}
    restored.copy_to(params)
    assert params["w"].dtype == torch.bfloat16 and params["w"].item() == 1.0 and params["b"].item() == 2.0
    with pytest.raises(ValueError):
        restored.update({"other": torch.zeros(1)})
    with pytest.raises(RuntimeError):
        EMA().copy_to(params)
    with pytest.raises(ValueError):
        EMA().load_state_dict({"shadow": {}})


def test_ema_keeps_bf16_weights_in_float32() -> None:
    ema = EMA(0.9)
    ema.update({"w": torch.ones(1, dtype=torch.bfloat16)})
    assert ema.shadow["w"].dtype == torch.float32
    for _ in range(3):
        ema.update({"w": torch.full((1,), 1.01, dtype=torch.bfloat16)})  # bf16 1.01 rounds to 1.0078125
    # 1 + (1 - 0.9^3) * 0.0078125: a change a bf16 shadow could not hold
    assert ema.shadow["w"].item() == pytest.approx(1 + (1 - 0.9**3) * 0.0078125, rel=1e-6)

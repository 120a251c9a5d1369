"""LoraAdapters' per-sample routing (peft's mixed-batch forward) on the tiny FLUX.1 Kontext transformer."""

from __future__ import annotations

import pytest
import torch

from tests.workers.tiny_policy import GUIDANCE, edit_inputs, tiny_policy
from workers.policies.base import FluxConditions
from workers.policies.flux_kontext import FluxKontextPolicy, kontext_velocity


@pytest.fixture(scope="module")
def setup() -> tuple[FluxKontextPolicy, FluxConditions, torch.Tensor, torch.Tensor]:
    """A policy whose `default`, `old` and base all differ, with conditions and x_t, t for 3 samples."""
    policy = tiny_policy()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in policy.trainable_parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    prompts, images = edit_inputs(3)
    conditions = policy.encode_conditions(prompts, images)
    channels, height, width = policy.latent_shape
    x_t = torch.randn(3, (height // 2) * (width // 2), 4 * channels, generator=generator)
    return policy, conditions, x_t, torch.rand(3, generator=generator)


def _trainable_names(policy: FluxKontextPolicy) -> set[str]:
    return {name for name, p in policy.transformer.named_parameters() if p.requires_grad}


def test_each_sample_goes_through_its_own_adapter(setup) -> None:
    policy, conditions, x_t, t = setup
    routing = ["default", None, "old"]
    alone = []
    for index, adapter in enumerate(routing):
        policy.adapters.activate(adapter)
        with torch.no_grad():
            alone.append(kontext_velocity(policy.pipeline, x_t[index : index + 1], t[index : index + 1],
                                          conditions.select([index]), GUIDANCE))  # fmt: skip
    policy.adapters.activate("default")
    with torch.no_grad(), policy.adapters.per_sample(routing):
        mixed = kontext_velocity(policy.pipeline, x_t, t, conditions, GUIDANCE)
    torch.testing.assert_close(mixed, torch.cat(alone), rtol=0, atol=1e-5)
    assert (alone[0] - alone[1]).abs().max() > 1e-3 and (alone[1] - alone[2]).abs().max() > 1e-3


def test_the_routing_before_and_the_grad_rule_come_back(setup) -> None:
    policy, conditions, x_t, t = setup
    trainable = _trainable_names(policy)
    assert trainable and all(".default." in name for name in trainable)
    policy.adapters.activate(None)
    with torch.no_grad():
        base = kontext_velocity(policy.pipeline, x_t, t, conditions, GUIDANCE)
        with pytest.raises(ZeroDivisionError), policy.adapters.per_sample(["old"] * 3):
            1 / 0  # noqa: B018 - the body fails; the routing must still be restored
        assert policy.adapters.active is None
        torch.testing.assert_close(kontext_velocity(policy.pipeline, x_t, t, conditions, GUIDANCE), base)
    assert _trainable_names(policy) == trainable
    policy.adapters.activate("default")


def test_refuses_what_it_cannot_route(setup) -> None:
    policy, conditions, x_t, t = setup
    with pytest.raises(RuntimeError, match="no-grad"), policy.adapters.per_sample(["old"]):
        pass
    with torch.no_grad():
        with pytest.raises(KeyError, match="ema"), policy.adapters.per_sample(["old", "ema"]):
            pass
        with pytest.raises(ValueError, match="one adapter name per sample"), policy.adapters.per_sample([]):
            pass
        with pytest.raises(ValueError, match="Length of `adapter_names`"), policy.adapters.per_sample(["old"]):
            kontext_velocity(policy.pipeline, x_t, t, conditions, GUIDANCE)  # 3 samples, 1 name
    with pytest.raises(ValueError, match="expected 4"):
        policy.adapters.sampling_and_base(lambda: torch.zeros(3, 1), 2)

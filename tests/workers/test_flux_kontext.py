"""FluxKontextPolicy on the tiny pipeline: conditions, sampling, velocities per adapter, adapter state, grads."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tests.workers.tiny_policy import GUIDANCE, SIZE, VISIBLE_LORA, edit_inputs, tiny_policy
from workers.policies.base import LoraSettings, Policy
from workers.policies.factory import PolicySpec, build_policy
from workers.policies.flux_kontext import FluxKontextPolicy, kontext_velocity
from workers.policies.tiny import build_tiny_kontext


@pytest.fixture
def policy() -> FluxKontextPolicy:
    return tiny_policy()


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return edit_inputs()[0]


@pytest.fixture(scope="module")
def sources() -> np.ndarray:
    return edit_inputs()[1]


def _noisy(policy: FluxKontextPolicy, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = policy.latent_shape
    x_t = torch.randn(batch, (height // 2) * (width // 2), 4 * channels, generator=generator)
    return x_t, torch.rand(batch, generator=generator)


def test_is_a_policy(policy: FluxKontextPolicy) -> None:
    assert isinstance(policy, Policy)
    assert policy.family == "flux-kontext"


def test_encode_conditions_shapes(policy: FluxKontextPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts, sources)
    tokens = (SIZE // 8) ** 2  # VAE factor 4, then 2x2 packing
    assert conditions.latent_shape == (4, SIZE // 4, SIZE // 4) and conditions.tokens == tokens
    assert conditions.prompt_embeds.shape == (4, policy.max_sequence_length, 32)
    assert conditions.pooled_prompt_embeds.shape == (4, 32)
    assert conditions.text_ids.shape == (policy.max_sequence_length, 3)
    assert conditions.image_latents.shape == (4, tokens, 16)
    assert conditions.image_ids.shape == (tokens, 3)
    assert torch.all(conditions.image_ids[:, 0] == 1)  # Kontext's marker for condition tokens
    assert not torch.equal(conditions.prompt_embeds[0], conditions.prompt_embeds[1])
    with pytest.raises(ValueError):
        policy.encode_conditions(prompts[:2], sources)


def test_inputs_are_resized_to_the_policy_size(policy: FluxKontextPolicy, prompts, sources) -> None:
    big = np.repeat(np.repeat(sources[:1], 2, axis=1), 2, axis=2)  # 128 x 128
    assert policy.encode_conditions(prompts[:1], big).image_latents.shape == (1, (SIZE // 8) ** 2, 16)


def test_timesteps(policy: FluxKontextPolicy) -> None:
    times = policy.timesteps(6)
    assert len(times) == 6 and times[0] == 1.0 and times[-1] > 0
    assert all(b < a for a, b in itertools.pairwise(times))


def test_sample_is_seeded_and_independent_of_the_batch(policy: FluxKontextPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:1], sources[:1])
    together = policy.sample(conditions, [1, 2], steps=3, guidance=GUIDANCE)
    assert together.shape == (2, conditions.tokens, 16) and together.dtype == torch.float32
    again = policy.sample(conditions, [1, 2], steps=3, guidance=GUIDANCE)
    torch.testing.assert_close(together, again, rtol=0, atol=0)
    one = policy.sample(conditions, [1], steps=3, guidance=GUIDANCE)
    two = policy.sample(conditions, [2], steps=3, guidance=GUIDANCE)
    torch.testing.assert_close(together, torch.cat([one, two]), rtol=1e-5, atol=1e-5)
    assert (together[0] - together[1]).abs().mean() > 0.1
    with pytest.raises(ValueError):
        policy.sample(conditions.repeat(2), [1], steps=3, guidance=GUIDANCE)


def test_decode_gives_uint8_images(policy: FluxKontextPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:1], sources[:1])
    images = policy.decode(policy.sample(conditions, [3, 4, 5], steps=2, guidance=GUIDANCE))
    assert images.shape == (3, SIZE, SIZE, 3) and images.dtype == np.uint8


def test_no_adapter_is_the_bare_base_model(policy: FluxKontextPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:2], sources[:2])
    x_t, t = _noisy(policy, 2)
    base = build_tiny_kontext(0)  # the same weights, never touched by peft
    with torch.no_grad():
        expected = kontext_velocity(base, x_t, t, conditions, GUIDANCE)
    torch.testing.assert_close(policy.velocity(x_t, t, conditions, adapter=None, guidance=GUIDANCE), expected)
    with_lora = policy.velocity(x_t, t, conditions, adapter="default", guidance=GUIDANCE)
    assert (with_lora - expected).abs().max() > 1e-3  # the adapter is visible, so the check above means something


def test_guidance_reaches_the_model(policy: FluxKontextPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:1], sources[:1])
    x_t, t = _noisy(policy, 1)
    low = policy.velocity(x_t, t, conditions, adapter=None, guidance=1.0)
    high = policy.velocity(x_t, t, conditions, adapter=None, guidance=4.0)
    assert (low - high).abs().max() > 1e-4


def _perturb_default(policy: FluxKontextPolicy) -> None:
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for param in policy.trainable_parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))


def test_old_starts_as_default_then_copy_adapter_resyncs(policy: FluxKontextPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:2], sources[:2])
    x_t, t = _noisy(policy, 2)

    def velocity(adapter: str) -> torch.Tensor:
        with torch.no_grad():
            return policy.velocity(x_t, t, conditions, adapter=adapter, guidance=GUIDANCE)

    torch.testing.assert_close(velocity("default"), velocity("old"), rtol=0, atol=0)
    _perturb_default(policy)
    assert (velocity("default") - velocity("old")).abs().max() > 1e-3
    policy.copy_adapter("default", "old")
    torch.testing.assert_close(velocity("default"), velocity("old"), rtol=0, atol=0)


def test_only_default_trains(policy: FluxKontextPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:2], sources[:2])
    x_t, t = _noisy(policy, 2)
    trainable = {id(p) for p in policy.trainable_parameters()}
    all_params = list(policy.pipeline.transformer.named_parameters())
    assert trainable and all(".default." in name for name, p in all_params if id(p) in trainable)
    for adapter in ("old", None, "default"):  # peft's switching must not hand grads to another adapter
        policy.velocity(x_t, t, conditions, adapter=adapter, guidance=GUIDANCE)
        assert {id(p) for _, p in all_params if p.requires_grad} == trainable
    for part in (policy.pipeline.vae, policy.pipeline.text_encoder, policy.pipeline.text_encoder_2):
        assert not any(p.requires_grad for p in part.parameters())

    assert not policy.velocity(x_t, t, conditions, adapter="old", guidance=GUIDANCE).requires_grad
    assert not policy.velocity(x_t, t, conditions, adapter=None, guidance=GUIDANCE).requires_grad
    policy.velocity(x_t, t, conditions, adapter="default", guidance=GUIDANCE).square().mean().backward()
    for name, param in all_params:
        if id(param) in trainable:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_adapter_state_round_trip(policy: FluxKontextPolicy, prompts, sources) -> None:
    state = policy.adapter_state("default")
    assert state and all(".default." not in key and "lora_" in key for key in state)
    assert all(value.device.type == "cpu" for value in state.values())
    _perturb_default(policy)
    changed = policy.adapter_state("default")
    assert any(not torch.equal(state[key], changed[key]) for key in state)
    policy.load_adapter_state("default", state)
    assert all(torch.equal(state[key], value) for key, value in policy.adapter_state("default").items())
    policy.load_adapter_state("old", changed)  # states are portable between adapters
    assert all(torch.equal(changed[key], value) for key, value in policy.adapter_state("old").items())
    with pytest.raises(KeyError):
        policy.load_adapter_state("old", {"nope": torch.zeros(1)})
    with pytest.raises(KeyError):
        policy.adapter_state("ema")


def test_blend_adapter(policy: FluxKontextPolicy) -> None:
    _perturb_default(policy)
    default, old = policy.adapter_state("default"), policy.adapter_state("old")
    policy.blend_adapter("old", "default", decay=0.25)
    blended = policy.adapter_state("old")
    for key in blended:
        torch.testing.assert_close(blended[key], 0.25 * old[key] + 0.75 * default[key])


def test_bf16_base_keeps_lora_weights_in_float32(prompts, sources) -> None:
    policy = FluxKontextPolicy(build_tiny_kontext(0), size=SIZE, dtype=torch.bfloat16, lora=VISIBLE_LORA)
    assert policy.pipeline.transformer.dtype == torch.bfloat16
    assert {p.dtype for p in policy.trainable_parameters()} == {torch.float32}
    conditions = policy.encode_conditions(prompts[:1], sources[:1])
    assert conditions.image_latents.dtype == torch.bfloat16
    latents = policy.sample(conditions, [1, 2], steps=2, guidance=GUIDANCE)
    assert latents.dtype == torch.float32
    velocity = policy.velocity(latents, torch.rand(2), conditions.repeat(2), adapter="default", guidance=GUIDANCE)
    velocity.square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in policy.trainable_parameters())


def test_lora_init_is_seeded() -> None:
    rng_before = torch.random.get_rng_state()
    first, second = tiny_policy(LoraSettings()), tiny_policy(LoraSettings())
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    a, b = first.adapter_state("default"), second.adapter_state("default")
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert any(a[key].abs().sum() > 0 for key in a if "lora_A" in key)  # Gaussian A, zero B
    assert all(a[key].abs().sum() == 0 for key in a if "lora_B" in key)
    c = tiny_policy(LoraSettings(seed=1)).adapter_state("default")
    assert any(not torch.equal(a[key], c[key]) for key in a)


def test_old_and_reference_velocity_is_both_calls_in_one_forward(policy: FluxKontextPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:3], sources[:3])
    x_t, t = _noisy(policy, 3)
    _perturb_default(policy)
    policy.copy_adapter("default", "old")  # old = default now, both unlike the base
    _perturb_default(policy)  # and default unlike old
    with torch.no_grad():
        old = policy.velocity(x_t, t, conditions, adapter="old", guidance=GUIDANCE)
        reference = policy.velocity(x_t, t, conditions, adapter=None, guidance=GUIDANCE)
    batches = []
    hook = policy.transformer.register_forward_pre_hook(lambda _m, _a, kw: batches.append(len(kw["hidden_states"])),
                                                        with_kwargs=True)  # fmt: skip
    policy.velocity(x_t, t, conditions, adapter="default", guidance=GUIDANCE)  # with grad: routing stays default
    both = policy.old_and_reference_velocity(x_t, t, conditions, guidance=GUIDANCE)
    hook.remove()
    assert batches == [3, 6]  # one forward of the doubled batch
    torch.testing.assert_close(both[0], old, rtol=0, atol=1e-5)
    torch.testing.assert_close(both[1], reference, rtol=0, atol=1e-5)
    assert (old - reference).abs().max() > 1e-3
    assert all(v.dtype == torch.float32 and not v.requires_grad for v in both)
    assert policy.adapters.active == "default"
    trainable = {id(p) for p in policy.trainable_parameters()}
    assert {id(p) for p in policy.transformer.parameters() if p.requires_grad} == trainable
    with pytest.raises(ValueError):
        policy.old_and_reference_velocity(x_t, t, conditions.select([0]), guidance=GUIDANCE)


def _learner_gradients(policy: FluxKontextPolicy, conditions, x_t, t, batched: bool) -> list[torch.Tensor]:
    """The learner's micro-step order: v_theta with grad, then v_old and v_ref without, then backward."""
    v_theta = policy.velocity(x_t, t, conditions, adapter="default", guidance=GUIDANCE)
    if batched:
        v_old, v_ref = policy.old_and_reference_velocity(x_t, t, conditions, guidance=GUIDANCE)
    else:
        with torch.no_grad():
            v_old = policy.velocity(x_t, t, conditions, adapter="old", guidance=GUIDANCE)
            v_ref = policy.velocity(x_t, t, conditions, adapter=None, guidance=GUIDANCE)
    ((v_theta - v_old).square().mean() + (v_theta - v_ref).square().mean()).backward()
    grads = [p.grad.clone() for p in policy.trainable_parameters() if p.grad is not None]
    policy.transformer.zero_grad(set_to_none=True)
    return grads


def test_gradient_checkpointing_recomputes_the_blocks_and_keeps_the_gradients(prompts, sources) -> None:
    plain = tiny_policy()
    checkpointed = FluxKontextPolicy(build_tiny_kontext(0), size=SIZE, lora=VISIBLE_LORA, gradient_checkpointing=True)
    assert checkpointed.transformer.is_gradient_checkpointing and not plain.transformer.is_gradient_checkpointing
    conditions = plain.encode_conditions(prompts[:2], sources[:2])
    x_t, t = _noisy(plain, 2)
    calls = {"plain": 0, "checkpointed": 0}

    def counter(name: str):
        return lambda *_: calls.__setitem__(name, calls[name] + 1)

    blocks = {"plain": plain, "checkpointed": checkpointed}
    hooks = [
        p.pipeline.transformer.transformer_blocks[0].register_forward_pre_hook(counter(n)) for n, p in blocks.items()
    ]
    for batched in (False, True):  # a no-grad call between the forward and the backward must not re-route it
        expected = _learner_gradients(plain, conditions, x_t, t, batched)
        got = _learner_gradients(checkpointed, conditions, x_t, t, batched)
        assert len(got) == len(expected) == len(plain.trainable_parameters())
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert calls["checkpointed"] == calls["plain"] + 2  # the block ran again in each backward
    for hook in hooks:
        hook.remove()


def test_spec_memory_fields_reach_the_policy() -> None:
    spec = PolicySpec(gradient_checkpointing=True)
    assert spec.offload_encoders  # the default: on a GPU the learner then holds the transformer alone
    policy, plain = build_policy(spec, size=SIZE), build_policy(PolicySpec(), size=SIZE)
    assert isinstance(policy, FluxKontextPolicy) and isinstance(plain, FluxKontextPolicy)
    assert policy.pipeline.transformer.is_gradient_checkpointing
    assert not plain.pipeline.transformer.is_gradient_checkpointing
    assert not policy.offload_encoders  # nothing to offload to on the CPU

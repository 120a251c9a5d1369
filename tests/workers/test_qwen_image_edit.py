"""QwenImageEditPolicy on the tiny random pipeline: conditions, sizes, sampling, adapters (as FLUX's), variants."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
from diffusers import QwenImageEditPipeline, QwenImageEditPlusPipeline
from peft.tuners.tuners_utils import BaseTunerLayer

from tests.workers.tiny_policy import SIZE, edit_inputs
from tests.workers.tiny_qwen_policy import tiny_qwen_policy
from workers.policies.base import LoraSettings, Policy
from workers.policies.factory import PolicySpec, build_policy
from workers.policies.qwen_conditions import QwenConditions
from workers.policies.qwen_forward import as_pil, edit_velocity, vae_pixels
from workers.policies.qwen_image_edit import LORA_TARGETS, QwenImageEditPolicy
from workers.policies.tiny_qwen import build_tiny_qwen_image_edit

TOKENS = (SIZE // 8) ** 2  # VAE factor 4, then 2x2 packing
CHANNELS = 16  # 4 latent channels x 2x2


@pytest.fixture
def policy() -> QwenImageEditPolicy:
    return tiny_qwen_policy()


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return edit_inputs()[0]


@pytest.fixture(scope="module")
def sources() -> np.ndarray:
    return edit_inputs()[1]


def _noisy(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, TOKENS, CHANNELS, generator=generator), torch.rand(batch, generator=generator)


def test_is_a_policy(policy: QwenImageEditPolicy) -> None:
    assert isinstance(policy, Policy)
    assert policy.family == "qwen-image-edit"


def test_encode_conditions_shapes(policy: QwenImageEditPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts, sources)
    assert conditions.latent_shape == (4, SIZE // 4, SIZE // 4) and conditions.tokens == TOKENS
    batch, length, width = conditions.prompt_embeds.shape
    assert (batch, width) == (4, 32) and conditions.prompt_mask.shape == (4, length)
    lengths = conditions.prompt_mask.sum(dim=1)
    assert int(lengths.max()) == length and len(set(lengths.tolist())) > 1  # prompts differ: padded, masked
    assert conditions.image_latents.shape == (4, TOKENS, CHANNELS)
    assert not torch.equal(conditions.prompt_embeds[0], conditions.prompt_embeds[1])
    with pytest.raises(ValueError):
        policy.encode_conditions(prompts[:2], sources)
    with pytest.raises(ValueError, match="uint8"):
        policy.encode_conditions(prompts[:1], sources[:1].astype(np.float32))


def test_the_prompt_embeddings_see_the_image(policy: QwenImageEditPolicy, prompts, sources) -> None:
    """Qwen2.5-VL reads the instruction with the input image: same prompt, other image, other embeddings."""
    same_prompt = policy.encode_conditions([prompts[0]] * 2, sources[:2])
    valid = int(same_prompt.prompt_mask[0].sum())
    assert not torch.equal(same_prompt.prompt_embeds[0, :valid], same_prompt.prompt_embeds[1, :valid])


def test_a_sample_encodes_the_same_alone_or_in_a_batch(policy: QwenImageEditPolicy, prompts, sources) -> None:
    together = policy.encode_conditions(prompts, sources)
    for i in range(len(prompts)):
        alone = policy.encode_conditions(prompts[i : i + 1], sources[i : i + 1])
        valid = int(together.prompt_mask[i].sum())
        assert alone.prompt_embeds.shape[1] == valid and bool(alone.prompt_mask.all())
        torch.testing.assert_close(together.prompt_embeds[i, :valid], alone.prompt_embeds[0], rtol=0, atol=0)
        assert not together.prompt_embeds[i, valid:].any()  # padding is zeros
        torch.testing.assert_close(together.image_latents[i], alone.image_latents[0], rtol=0, atol=0)


def test_conditioning_and_generation_stay_at_the_configured_size(policy: QwenImageEditPolicy, prompts, sources) -> None:
    """The pipelines would resize to about 1 MP; the policy conditions and generates at `size`."""
    big = np.repeat(np.repeat(sources[:1], 3, axis=1), 2, axis=2)  # 192 x 128, another aspect ratio
    assert vae_pixels(policy.pipeline, as_pil(big), SIZE).shape == (1, 3, 1, SIZE, SIZE)
    conditions = policy.encode_conditions(prompts[:1], big)
    assert conditions.image_latents.shape == (1, TOKENS, CHANNELS)
    images = policy.decode(policy.sample(conditions, [0], steps=2))
    assert images.shape == (1, SIZE, SIZE, 3)
    assert policy.prompt_image_size == SIZE  # QwenImageEditPipeline's VL encoder sees the same image
    assert tiny_qwen_policy(plus=True).prompt_image_size == SIZE  # Plus: its 384 x 384, but never above size
    assert tiny_qwen_policy(plus=True, size=512).prompt_image_size == 384


def test_timesteps(policy: QwenImageEditPolicy) -> None:
    times = policy.timesteps(6)
    assert len(times) == 6 and times[0] == 1.0
    assert all(b < a for a, b in itertools.pairwise(times))
    assert times[-1] == pytest.approx(0.02, abs=1e-6)  # Qwen-Image's shift_terminal


def test_sample_is_seeded_and_independent_of_the_batch(policy: QwenImageEditPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:1], sources[:1])
    together = policy.sample(conditions, [1, 2], steps=3)
    assert together.shape == (2, TOKENS, CHANNELS) and together.dtype == torch.float32
    torch.testing.assert_close(together, policy.sample(conditions, [1, 2], steps=3), rtol=0, atol=0)
    one, two = policy.sample(conditions, [1], steps=3), policy.sample(conditions, [2], steps=3)
    torch.testing.assert_close(together, torch.cat([one, two]), rtol=1e-5, atol=1e-5)
    assert (together[0] - together[1]).abs().mean() > 0.1
    with pytest.raises(ValueError):
        policy.sample(conditions.repeat(2), [1], steps=3)


def test_no_guidance_is_taken(policy: QwenImageEditPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:1], sources[:1])
    x_t, t = _noisy(1)
    with pytest.raises(ValueError, match="without guidance"):
        policy.velocity(x_t, t, conditions, adapter=None, guidance=2.5)
    with pytest.raises(ValueError, match="without guidance"):
        policy.sample(conditions, [0], steps=2, guidance=4.0)
    policy.velocity(x_t, t, conditions, adapter=None, guidance=0.0)  # what the trainer passes for None


def test_decode_gives_uint8_images(policy: QwenImageEditPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:1], sources[:1])
    images = policy.decode(policy.sample(conditions, [3, 4, 5], steps=2))
    assert images.shape == (3, SIZE, SIZE, 3) and images.dtype == np.uint8


def test_lora_sits_on_the_attention_projections_of_every_block(policy: QwenImageEditPolicy) -> None:
    adapted = {name for name, module in policy.transformer.named_modules() if isinstance(module, BaseTunerLayer)}
    blocks = len(policy.pipeline.transformer.transformer_blocks)
    assert adapted == {f"transformer_blocks.{i}.attn.{target}" for i in range(blocks) for target in LORA_TARGETS}


def test_no_adapter_is_the_bare_base_model(policy: QwenImageEditPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:2], sources[:2])  # padded: the mask is used
    x_t, t = _noisy(2)
    base = build_tiny_qwen_image_edit(0)  # the same weights, never touched by peft
    with torch.no_grad():
        expected = edit_velocity(base, x_t, t, conditions)
    torch.testing.assert_close(policy.velocity(x_t, t, conditions, adapter=None), expected)
    with_lora = policy.velocity(x_t, t, conditions, adapter="default")
    assert (with_lora - expected).abs().max() > 1e-3  # the adapter is visible, so the check above means something


def _perturb_default(policy: QwenImageEditPolicy) -> None:
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for param in policy.trainable_parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))


def test_old_starts_as_default_then_copy_adapter_resyncs(policy: QwenImageEditPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:2], sources[:2])
    x_t, t = _noisy(2)

    def velocity(adapter: str) -> torch.Tensor:
        with torch.no_grad():
            return policy.velocity(x_t, t, conditions, adapter=adapter)

    torch.testing.assert_close(velocity("default"), velocity("old"), rtol=0, atol=0)
    _perturb_default(policy)
    assert (velocity("default") - velocity("old")).abs().max() > 1e-3
    policy.copy_adapter("default", "old")
    torch.testing.assert_close(velocity("default"), velocity("old"), rtol=0, atol=0)


def test_old_and_reference_in_one_forward_equal_two_calls(policy: QwenImageEditPolicy, prompts, sources) -> None:
    _perturb_default(policy)
    policy.blend_adapter("old", "default", decay=0.5)  # old, default and the base all differ now
    conditions = policy.encode_conditions(prompts[:2], sources[:2])
    x_t, t = _noisy(2)
    old, reference = policy.old_and_reference_velocity(x_t, t, conditions)
    with torch.no_grad():
        torch.testing.assert_close(old, policy.velocity(x_t, t, conditions, adapter="old"), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(reference, policy.velocity(x_t, t, conditions, adapter=None), rtol=1e-4, atol=1e-5)
    assert not old.requires_grad and not reference.requires_grad
    assert (old - reference).abs().max() > 1e-3


def test_only_default_trains(policy: QwenImageEditPolicy, prompts, sources) -> None:
    conditions = policy.encode_conditions(prompts[:2], sources[:2])
    x_t, t = _noisy(2)
    trainable = {id(p) for p in policy.trainable_parameters()}
    all_params = list(policy.pipeline.transformer.named_parameters())
    assert trainable and all(".default." in name for name, p in all_params if id(p) in trainable)
    for adapter in ("old", None, "default"):  # peft's switching must not hand grads to another adapter
        policy.velocity(x_t, t, conditions, adapter=adapter)
        assert {id(p) for _, p in all_params if p.requires_grad} == trainable
    for part in (policy.pipeline.vae, policy.pipeline.text_encoder):
        assert not any(p.requires_grad for p in part.parameters())
    assert not policy.velocity(x_t, t, conditions, adapter="old").requires_grad
    policy.velocity(x_t, t, conditions, adapter="default").square().mean().backward()
    for name, param in all_params:
        if id(param) in trainable:
            reaches = param.grad is not None and bool(param.grad.abs().sum() > 0)
            assert reaches != _discarded(policy, name), name
        else:
            assert param.grad is None, name


def _discarded(policy: QwenImageEditPolicy, name: str) -> bool:
    """Qwen-Image keeps only the image stream of its last block, so that block's text-stream query and
    output projections reach nothing: their LoRA gets no gradient (harmless: its B stays 0)."""
    last = len(policy.pipeline.transformer.transformer_blocks) - 1
    return any(name.startswith(f"transformer_blocks.{last}.attn.{proj}.") for proj in ("add_q_proj", "to_add_out"))


def test_adapter_state_round_trip_and_blend(policy: QwenImageEditPolicy) -> None:
    state = policy.adapter_state("default")
    assert state and all(".default." not in key and "lora_" in key for key in state)
    _perturb_default(policy)
    changed = policy.adapter_state("default")
    policy.load_adapter_state("default", state)
    assert all(torch.equal(state[key], value) for key, value in policy.adapter_state("default").items())
    policy.load_adapter_state("old", changed)  # states are portable between adapters
    policy.blend_adapter("old", "default", decay=0.25)
    blended = policy.adapter_state("old")
    for key in blended:
        torch.testing.assert_close(blended[key], 0.25 * changed[key] + 0.75 * state[key])
    with pytest.raises(KeyError):
        policy.load_adapter_state("old", {"nope": torch.zeros(1)})


def test_bf16_base_keeps_lora_weights_in_float32(prompts, sources) -> None:
    policy = QwenImageEditPolicy(build_tiny_qwen_image_edit(0), size=SIZE, dtype=torch.bfloat16)
    assert policy.pipeline.transformer.dtype == torch.bfloat16
    assert {p.dtype for p in policy.trainable_parameters()} == {torch.float32}
    conditions = policy.encode_conditions(prompts[:1], sources[:1])
    assert conditions.image_latents.dtype == torch.bfloat16 and conditions.prompt_mask.dtype == torch.long
    latents = policy.sample(conditions, [1, 2], steps=2)
    assert latents.dtype == torch.float32
    policy.velocity(latents, torch.rand(2), conditions.repeat(2), adapter="default").square().mean().backward()
    grads = [p.grad for p in policy.trainable_parameters() if p.grad is not None]
    assert len(grads) > len(policy.trainable_parameters()) // 2 and {g.dtype for g in grads} == {torch.float32}


def test_conditions_ship_and_join(policy: QwenImageEditPolicy, prompts, sources) -> None:
    a = policy.encode_conditions(prompts[:1], sources[:1])
    b = policy.encode_conditions(prompts[3:4], sources[3:4])
    joined = QwenConditions.cat([a, b.repeat(2)])
    assert len(joined) == 3 and joined.prompt_embeds.shape[1] == max(a.prompt_embeds.shape[1], b.prompt_embeds.shape[1])
    shipped = pickle.loads(pickle.dumps(joined.cpu()))
    assert torch.equal(shipped.prompt_mask, joined.prompt_mask) and torch.equal(
        shipped.image_latents, joined.image_latents
    )
    assert torch.equal(joined.select([1]).prompt_embeds, joined.select([2]).prompt_embeds)
    with pytest.raises(ValueError, match="batch size"):
        QwenConditions(a.prompt_embeds, a.prompt_mask, a.image_latents.repeat(2, 1, 1), a.latent_shape)
    with pytest.raises(TypeError, match="QwenConditions"):
        policy.velocity(*_noisy(1), object(), adapter=None)  # type: ignore[arg-type]


def test_either_variant_loads_from_one_directory_and_builds_from_a_spec(tmp_path, prompts, sources) -> None:
    build_tiny_qwen_image_edit(0).save_pretrained(tmp_path)
    plain = QwenImageEditPolicy.from_pretrained(tmp_path, size=SIZE)
    plus = QwenImageEditPolicy.from_pretrained(tmp_path, variant="edit-plus", size=SIZE)
    assert type(plain.pipeline) is QwenImageEditPipeline and type(plus.pipeline) is QwenImageEditPlusPipeline
    a, b = plain.encode_conditions(prompts[:1], sources[:1]), plus.encode_conditions(prompts[:1], sources[:1])
    assert a.prompt_embeds.shape != b.prompt_embeds.shape  # Plus's template names the image ("Picture 1: ")
    torch.testing.assert_close(a.image_latents, b.image_latents, rtol=0, atol=0)
    assert plus.sample(b, [0, 1], steps=2).shape == (2, TOKENS, CHANNELS)
    with pytest.raises(ValueError, match="variant"):
        QwenImageEditPolicy.from_pretrained(tmp_path, variant="edit-2511", size=SIZE)

    spec = PolicySpec(family="qwen_image_edit", pretrained=str(tmp_path), variant="edit-plus",
                      lora=LoraSettings(rank=4, alpha=8))  # fmt: skip
    built = build_policy(spec, size=SIZE)
    assert isinstance(built, QwenImageEditPolicy) and built.plus and spec.guidance is None

"""The tiny FLUX.1 Kontext pipeline: deterministic, small, and a faithful save/load round trip."""

from __future__ import annotations

import torch
from diffusers import FluxKontextPipeline

from tests.workers.tiny_policy import SIZE, edit_inputs
from workers.policies.flux_kontext import FluxKontextPolicy
from workers.policies.tiny import build_tiny_kontext, parameter_counts


def _state(pipeline: FluxKontextPipeline) -> dict[str, torch.Tensor]:
    parts = ("transformer", "vae", "text_encoder", "text_encoder_2")
    return {f"{part}.{k}": v for part in parts for k, v in getattr(pipeline, part).state_dict().items()}


def test_builds_deterministically_and_small() -> None:
    rng_before = torch.random.get_rng_state()
    first, second, other = build_tiny_kontext(0), build_tiny_kontext(0), build_tiny_kontext(1)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the global RNG is left alone
    a, b, c = _state(first), _state(second), _state(other)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert any(not torch.equal(a[key], c[key]) for key in a)
    assert sum(parameter_counts(first).values()) < 2_000_000
    assert first.transformer.config.guidance_embeds


def test_tokenizers_encode_prompts() -> None:
    pipeline = build_tiny_kontext(0)
    prompt = "Move the red square 12 px left!"
    clip_ids = pipeline.tokenizer(prompt).input_ids
    t5_ids = pipeline.tokenizer_2(prompt).input_ids
    assert clip_ids[0] == pipeline.tokenizer.bos_token_id and clip_ids[-1] == pipeline.tokenizer.eos_token_id
    assert pipeline.tokenizer.unk_token_id not in clip_ids[1:-1]
    assert pipeline.tokenizer_2.unk_token_id not in t5_ids and t5_ids[-1] == pipeline.tokenizer_2.eos_token_id


def test_save_and_load_round_trip(tmp_path) -> None:
    prompts, sources = edit_inputs(1)
    build_tiny_kontext(0).save_pretrained(tmp_path)
    loaded = FluxKontextPipeline.from_pretrained(tmp_path, local_files_only=True, dtype=torch.float32)
    original_state, loaded_state = _state(build_tiny_kontext(0)), _state(loaded)
    assert original_state.keys() == loaded_state.keys()
    assert all(torch.equal(original_state[key], loaded_state[key]) for key in original_state)

    original = FluxKontextPolicy(build_tiny_kontext(0), size=SIZE)
    reloaded = FluxKontextPolicy.from_pretrained(tmp_path, size=SIZE)
    conditions = original.encode_conditions(prompts[:1], sources[:1])
    reloaded_conditions = reloaded.encode_conditions(prompts[:1], sources[:1])
    torch.testing.assert_close(conditions.prompt_embeds, reloaded_conditions.prompt_embeds, rtol=0, atol=0)
    torch.testing.assert_close(conditions.image_latents, reloaded_conditions.image_latents, rtol=0, atol=0)
    samples = original.sample(conditions, [0, 1], steps=2, guidance=2.5)
    torch.testing.assert_close(samples, reloaded.sample(reloaded_conditions, [0, 1], steps=2, guidance=2.5))

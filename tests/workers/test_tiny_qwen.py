"""The tiny Qwen-Image-Edit pipeline: deterministic, small, a real tokenizer, a faithful save/load round trip."""

from __future__ import annotations

import torch
from diffusers import QwenImageEditPipeline, QwenImageEditPlusPipeline

from tests.workers.tiny_policy import SIZE, edit_inputs
from workers.policies.qwen_image_edit import QwenImageEditPolicy
from workers.policies.tiny_qwen import build_tiny_qwen_image_edit, parameter_counts


def _state(pipeline: QwenImageEditPipeline | QwenImageEditPlusPipeline) -> dict[str, torch.Tensor]:
    parts = ("transformer", "vae", "text_encoder")
    return {f"{part}.{k}": v for part in parts for k, v in getattr(pipeline, part).state_dict().items()}


def test_builds_deterministically_and_small() -> None:
    rng_before = torch.random.get_rng_state()
    first, second, other = build_tiny_qwen_image_edit(0), build_tiny_qwen_image_edit(0), build_tiny_qwen_image_edit(1)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the global RNG is left alone
    a, b, c = _state(first), _state(second), _state(other)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert any(not torch.equal(a[key], c[key]) for key in a)
    assert sum(parameter_counts(first).values()) < 1_000_000
    assert not first.transformer.config.guidance_embeds  # Qwen-Image-Edit has no guidance embedding
    assert isinstance(build_tiny_qwen_image_edit(0, plus=True), QwenImageEditPlusPipeline)


def test_the_tokenizer_drops_exactly_the_system_prompt_and_spells_anything() -> None:
    for plus in (False, True):
        pipeline = build_tiny_qwen_image_edit(0, plus=plus)
        template = pipeline.prompt_template_encode
        system = template[: template.index("<|im_start|>user\n") + len("<|im_start|>user\n")]
        assert len(pipeline.tokenizer(system).input_ids) == pipeline.prompt_template_encode_start_idx == 64
    tokenizer = build_tiny_qwen_image_edit(0).tokenizer
    prompt = "Rotate the café's blue triangle 45° clockwise!"
    ids = tokenizer(prompt).input_ids
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == prompt


def test_save_and_load_round_trip_as_either_pipeline(tmp_path) -> None:
    prompts, sources = edit_inputs(1)
    build_tiny_qwen_image_edit(0).save_pretrained(tmp_path)
    original_state = _state(build_tiny_qwen_image_edit(0))
    for cls in (QwenImageEditPipeline, QwenImageEditPlusPipeline):
        loaded = cls.from_pretrained(tmp_path, local_files_only=True, dtype=torch.float32)
        loaded_state = _state(loaded)
        assert original_state.keys() == loaded_state.keys()
        assert all(torch.equal(original_state[key], loaded_state[key]) for key in original_state)

    original = QwenImageEditPolicy(build_tiny_qwen_image_edit(0), size=SIZE)
    reloaded = QwenImageEditPolicy.from_pretrained(tmp_path, size=SIZE)
    conditions = original.encode_conditions(prompts, sources)
    reloaded_conditions = reloaded.encode_conditions(prompts, sources)
    torch.testing.assert_close(conditions.prompt_embeds, reloaded_conditions.prompt_embeds, rtol=0, atol=0)
    torch.testing.assert_close(conditions.image_latents, reloaded_conditions.image_latents, rtol=0, atol=0)
    samples = original.sample(conditions, [0, 1], steps=2)
    torch.testing.assert_close(samples, reloaded.sample(reloaded_conditions, [0, 1], steps=2))

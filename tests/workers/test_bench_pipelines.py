"""Local diffusers directories through `bench generate`'s renderer: the reference settings, the size held.

Kontext and Qwen-Image-Edit are the committed tiny checkpoints; InstructPix2Pix is a tiny random
pipeline built here from config (8-channel UNet, tiny VAE and CLIP text encoder, a byte-level
tokenizer without files) and saved with `save_pretrained`, as a user's download would be laid out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionInstructPix2PixPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

from motionnft.data.formats import load_dataset
from tests.workers.bench_data import SIZE, pixels, write_bench
from workers.bench_generate import generate_bench
from workers.bench_pipelines import condition_area, diffusers_source, load_pipeline
from workers.bench_tasks import SpecError
from workers.policies.factory import TINY_CHECKPOINT, TINY_QWEN_CHECKPOINT
from workers.policies.tiny import build_clip_tokenizer


def save_tiny_instruct_pix2pix(path: Path) -> Path:
    """A random InstructPix2Pix small enough for a CPU test (VAE factor 2), saved as a diffusers directory."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=8, out_channels=4, block_out_channels=(32, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(16, 16), latent_channels=4, norm_num_groups=8, sample_size=SIZE,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )  # fmt: skip
    tokenizer = build_clip_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )  # fmt: skip
    pipeline = StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipeline.save_pretrained(path)
    return path


def render_dir(path: Path, tmp_path: Path, **settings: float) -> Path:
    """Every item of a 2-item bench rendered by the diffusers directory at `path` (2 steps); their folder."""
    source = diffusers_source(path, str(path), size=SIZE, steps=2, guidance=settings.get("guidance"))
    assert source is not None
    folder = tmp_path / "out" / path.name
    summary = generate_bench(load_dataset(write_bench(tmp_path / "bench", 2)), source, folder, use_ray=False,
                             progress=False)  # fmt: skip
    assert (summary.rendered, summary.failed) == (2, [])
    assert all(pixels(p).shape == (SIZE, SIZE, 3) for p in folder.glob("*.png"))
    return folder


@pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first")
def test_a_kontext_directory_renders_with_the_reference_settings(tmp_path: Path) -> None:
    source = diffusers_source(TINY_CHECKPOINT, "tiny-kontext", size=SIZE, steps=None, guidance=None)
    assert source is not None
    assert (source.kind, source.family, source.pipeline, source.steps, source.guidance) == (
        "diffusers", "flux_kontext", "FluxKontextPipeline", 28, 2.5)  # fmt: skip
    folder = render_dir(TINY_CHECKPOINT, tmp_path)
    assert json.loads((folder / "generation.json").read_text())["steps"] == 2  # --steps overrides


def test_an_instruct_pix2pix_built_here_renders_through_the_command(tmp_path: Path) -> None:
    path = save_tiny_instruct_pix2pix(tmp_path / "ip2p")
    source = diffusers_source(path, "ip2p", size=SIZE, steps=None, guidance=None)
    assert source is not None
    assert (source.family, source.steps, source.guidance, source.options) == (
        "instruct_pix2pix", 100, 7.5, {"image_guidance_scale": 1.5})  # fmt: skip
    render_dir(path, tmp_path, guidance=3.0)


@pytest.mark.skipif(not TINY_QWEN_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny --family qwen_image_edit`")
def test_a_qwen_directory_conditions_at_the_held_size_with_true_cfg(tmp_path: Path) -> None:
    source = diffusers_source(TINY_QWEN_CHECKPOINT, "qwen", size=SIZE, steps=None, guidance=None)
    assert source is not None
    assert (source.family, source.steps, source.guidance, source.options) == (
        "qwen_image_edit", 50, 4.0, {"negative_prompt": " "})  # fmt: skip
    pipeline = load_pipeline(source, "cpu")
    module = sys.modules[type(pipeline).__module__]
    original = module.calculate_dimensions
    with condition_area(pipeline, SIZE):
        assert module.calculate_dimensions(1024 * 1024, 1.0)[:2] == (SIZE, SIZE)  # not ~1024 x 1024
    assert module.calculate_dimensions is original
    render_dir(TINY_QWEN_CHECKPOINT, tmp_path)


def test_a_directory_of_another_pipeline_or_none_at_all(tmp_path: Path) -> None:
    assert diffusers_source(tmp_path, "empty", size=SIZE, steps=None, guidance=None) is None
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(SpecError, match="holds a StableDiffusionXLPipeline; bench generate renders FluxKontext"):
        diffusers_source(tmp_path, "sdxl", size=SIZE, steps=None, guidance=None)
    (tmp_path / "model_index.json").write_text("{")
    with pytest.raises(SpecError, match="not a readable diffusers model index"):
        diffusers_source(tmp_path, "broken", size=SIZE, steps=None, guidance=None)

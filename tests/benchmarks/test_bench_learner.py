"""`make bench-learner`'s code on toy configs: both modes compute the same step, the section, the no-CUDA note."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformer2DModel

from benchmarks.bench_learner import LAST_GPU_RUN, Batch, main, project_velocities, reference_velocities
from benchmarks.learner_models import ARCHITECTURES, FLUX_KONTEXT_DEV, QWEN_IMAGE_EDIT
from benchmarks.report import write_section
from workers.policies.base import LoraSettings


@pytest.mark.parametrize(
    ("cls", "config", "billions"),
    [(FluxTransformer2DModel, FLUX_KONTEXT_DEV, 11.90), (QwenImageTransformer2DModel, QWEN_IMAGE_EDIT, 20.43)],
    ids=["flux", "qwen"],
)
def test_published_configs(cls, config, billions) -> None:
    """The class defaults are the published models' (FLUX.1 [dev]'s family adds the guidance embedding)."""
    defaults = {k: v.default for k, v in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    differ = {key for key, value in config.items() if defaults[key] != value}
    assert differ == ({"guidance_embeds"} if cls is FluxTransformer2DModel else set())
    with torch.device("meta"):  # shapes only: no memory
        model = cls(**config)
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == billions


@pytest.mark.parametrize("family", sorted(ARCHITECTURES))
def test_both_modes_compute_the_same_velocities(family: str) -> None:
    lora = LoraSettings(rank=4, alpha=8, init="random")  # adapters that change the output
    build = ARCHITECTURES[family]
    model = build(tiny=True, device="cpu", dtype=torch.float32, size=64, batch=2, text_tokens=8, lora=lora)
    assert model.latents == (2, 16, 16)  # 64x64 pixels, factor-8 VAE, 2x2 packing
    with torch.no_grad():  # make `old` differ from `default`
        for name, param in model.transformer.named_parameters():
            if ".old." in name:
                param.mul_(0.5)
    batch = Batch.random(model.latents, "cpu")
    x_t = batch.x0.lerp(batch.noise, 0.6)
    reference = reference_velocities(model, x_t, batch.t)
    project = project_velocities(model, x_t, batch.t)
    for a, b in zip(reference, project, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-5)
    assert (reference[0] - reference[1]).abs().max() > 1e-3 and (reference[1] - reference[2]).abs().max() > 1e-3
    assert reference[0].requires_grad and project[0].requires_grad


def test_tiny_run_writes_its_section(tmp_path: Path, capsys) -> None:
    page = tmp_path / "benchmarks.md"
    main(["--tiny", "--dtype", "float32", "--steps", "1", "--warmup", "0", "--out", str(page)])
    text = page.read_text()
    assert "<!-- bench-learner-tiny:start -->" in text and "### cpu run" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "(tiny)" in line]
    assert [(row[0][2:6], row[1][:3]) for row in rows] == [
        ("FLUX", "(a)"),
        ("FLUX", "(b)"),
        ("Qwen", "(a)"),
        ("Qwen", "(b)"),
    ]
    assert all(float(row[2]) > 0 for row in rows)  # s per sample-timestep
    assert all(float(row[4]) > 0 for row in rows if row[1].startswith("(b)"))  # b/a
    assert "s / sample-timestep" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA path")
def test_without_cuda_it_says_so_and_keeps_the_last_gpu_numbers(tmp_path: Path, capsys) -> None:
    page = tmp_path / "benchmarks.md"
    gpu_run = f"{LAST_GPU_RUN}\n\nMachine: NVIDIA H200.\n\n| transformer | mode |\n|---|---|\n| FLUX | (b) |"
    write_section(page, "bench-learner", f"## old intro\n\n{gpu_run}")
    write_section(page, "bench-judge", "## the judge's section")
    main(["--out", str(page)])
    text = page.read_text()
    assert "the numbers need CUDA" in text and gpu_run in text and "## old intro" not in text
    assert "## the judge's section" in text
    assert "no CUDA device" in capsys.readouterr().out
    fresh = tmp_path / "fresh.md"
    main(["--out", str(fresh)])
    assert "No GPU run recorded yet." in fresh.read_text()


@pytest.mark.gpu
def test_tiny_run_on_cuda_reports_peak_memory(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    main(["--tiny", "--device", "cuda", "--steps", "1", "--warmup", "1", "--out", str(page)])
    rows = [line.split(" | ") for line in page.read_text().splitlines() if line.startswith("| ") and "(a)" in line]
    assert rows and all(float(row[3]) > 0 for row in rows)  # peak GiB

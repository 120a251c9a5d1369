"""The bench renderer on the tiny FLUX.1 Kontext policy: PNGs, one bad item never stops the others, load errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from tests.workers.tiny_policy import SIZE, edit_inputs
from workers.bench_render import Renderer, RendererError
from workers.bench_tasks import RenderItem, RenderSource
from workers.policies.base import LoraSettings
from workers.policies.factory import TINY_CHECKPOINT, PolicySpec

pytestmark = pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first")


def tiny_source(size: int = SIZE, adapter: dict[str, torch.Tensor] | None = None) -> RenderSource:
    spec = PolicySpec(lora=LoraSettings(rank=4, alpha=8), sampling_steps=2)
    return RenderSource(spec="tiny", kind="preset", family=spec.family, steps=2, guidance=2.5, size=size,
                        path=str(TINY_CHECKPOINT), policy=spec, adapter=adapter)  # fmt: skip


def test_items_become_pngs_and_a_bad_item_only_fails_itself() -> None:
    prompts, images = edit_inputs(2)
    renderer = Renderer(tiny_source())
    assert renderer.ready() == "cpu"
    items = [
        RenderItem("a", prompts[0], images[0], seed=1),
        RenderItem("bad", prompts[1], np.zeros((SIZE, SIZE, 4), np.uint8), seed=2),  # RGBA: the policy refuses
        RenderItem("b", prompts[1], images[1], seed=2),
    ]
    a, bad, b = renderer.render(items)
    assert (a.id, bad.id, b.id) == ("a", "bad", "b") and a.error is None and b.error is None
    for result in (a, b):
        assert result.png is not None and result.seconds > 0
        with Image.open(io.BytesIO(result.png)) as png:
            assert (png.format, png.size, png.mode) == ("PNG", (SIZE, SIZE), "RGB")
    assert bad.png is None and bad.error and "\n" not in bad.error


def test_an_adapter_is_what_the_renderer_samples_with() -> None:
    """The sampling adapter gets the source's weights: random ones change the edit, the base's do not."""
    prompts, images = edit_inputs(1)
    item = RenderItem("a", prompts[0], images[0], seed=3)
    base = Renderer(tiny_source()).render([item])[0].png
    no_op = _adapter_state()  # the Gaussian init: LoRA B = 0
    assert Renderer(tiny_source(adapter=no_op)).render([item])[0].png == base
    generator = torch.Generator().manual_seed(0)
    moved = {k: torch.randn(v.shape, generator=generator) for k, v in no_op.items()}
    assert Renderer(tiny_source(adapter=moved)).render([item])[0].png != base


def _adapter_state() -> dict[str, torch.Tensor]:
    from workers.policies.factory import build_policy

    return build_policy(PolicySpec(lora=LoraSettings(rank=4, alpha=8)), size=SIZE).adapter_state("old")


def test_a_model_that_cannot_load_is_one_error_naming_the_source() -> None:
    with pytest.raises(RendererError, match=r"cannot load tiny \(preset\): ValueError: size 50"):
        Renderer(tiny_source(size=50))

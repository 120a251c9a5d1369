"""Reference diffusers pipelines for the bench: which ones, their published inference settings, the call.

A local diffusers directory (one with `model_index.json`) renders through its pipeline's own
`__call__`, with the settings the model's authors publish as defaults unless the command overrides
steps or guidance:

- `FluxKontextPipeline` (FLUX.1 Kontext): 28 steps, guidance 2.5 (its guidance embedding).
- `QwenImageEditPipeline`, `QwenImageEditPlusPipeline` (Qwen-Image-Edit, -2509): 50 steps, true CFG
  with `true_cfg_scale` 4.0 and the negative prompt " ".
- `StableDiffusionInstructPix2PixPipeline` (InstructPix2Pix): diffusers' defaults, 100 steps,
  `guidance_scale` 7.5 and `image_guidance_scale` 1.5.

Sizes are held at the source's S x S, as the policies hold theirs: Kontext without its preferred-
resolution snap (`_auto_resize=False`, `max_area` S^2); the Qwen pipelines with their condition image
at S^2 too (they would resize it to about 1024^2; the -2509 VL condition stays at 384^2 or S^2 if
smaller, as `QwenImageEditPolicy` does); InstructPix2Pix renders at its input's size. Images are uint8
(S, S, 3) in and out; the noise comes from a CPU `torch.Generator` seeded per item, so it does not
depend on the device.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from motionnft.data.records import read_file_bounded
from workers.bench_tasks import RenderSource, SpecError
from workers.policies.factory import DTYPES

MAX_MODEL_INDEX_BYTES = 2**20  # a model_index.json is under a kilobyte


@dataclass(frozen=True)
class ReferencePipeline:
    """One pipeline class: its family name, published steps and guidance, and how its call takes them."""

    family: str
    steps: int
    guidance: float
    guidance_arg: str  # the `__call__` argument the guidance value goes to
    options: dict[str, Any] = field(default_factory=dict)  # fixed call settings besides steps and guidance
    cuda_dtype: str = "bfloat16"  # on a GPU (the authors' examples); the CPU renders in float32


QWEN = ReferencePipeline("qwen_image_edit", 50, 4.0, "true_cfg_scale", {"negative_prompt": " "})
REFERENCE: dict[str, ReferencePipeline] = {
    "FluxKontextPipeline": ReferencePipeline("flux_kontext", 28, 2.5, "guidance_scale"),
    "QwenImageEditPipeline": QWEN,
    "QwenImageEditPlusPipeline": QWEN,
    "StableDiffusionInstructPix2PixPipeline": ReferencePipeline(
        "instruct_pix2pix", 100, 7.5, "guidance_scale", {"image_guidance_scale": 1.5}, cuda_dtype="float16"
    ),
}


def diffusers_source(
    path: Path, spec: str, *, size: int, steps: int | None, guidance: float | None
) -> RenderSource | None:
    """The source a local diffusers directory gives, or None when `path` is not one (no model_index.json).

    Raises:
        SpecError: the directory holds a pipeline the bench has no reference settings for, or its
            model_index.json cannot be read.
    """
    index = path / "model_index.json"
    if not index.is_file():
        return None
    try:
        class_name = json.loads(read_file_bounded(index, MAX_MODEL_INDEX_BYTES))["_class_name"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpecError(f"{index}: not a readable diffusers model index ({exc})") from exc
    reference = REFERENCE.get(class_name)
    if reference is None:
        raise SpecError(f"{path} holds a {class_name}; bench generate renders {', '.join(REFERENCE)}")
    return RenderSource(
        spec=spec, kind="diffusers", family=reference.family, steps=steps or reference.steps,
        guidance=reference.guidance if guidance is None else guidance, size=size, path=str(path.resolve()),
        pipeline=class_name, options=dict(reference.options),
    )  # fmt: skip


def load_pipeline(source: RenderSource, device: str) -> Any:
    """The source's pipeline on `device` (float32 on the CPU, the reference dtype on a GPU); never the hub."""
    import diffusers

    assert source.pipeline is not None
    reference = REFERENCE[source.pipeline]
    dtype = torch.float32 if device == "cpu" else DTYPES[reference.cuda_dtype]
    pipeline = getattr(diffusers, source.pipeline).from_pretrained(source.path, local_files_only=True, dtype=dtype)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def run_pipeline(pipeline: Any, source: RenderSource, prompt: str, image: np.ndarray, seed: int) -> np.ndarray:
    """One edit of uint8 (S, S, 3) `image` by `prompt`: the pipeline's `__call__`, seeded; uint8 (H, W, 3)."""
    assert source.pipeline is not None
    reference, size = REFERENCE[source.pipeline], source.size
    call: dict[str, Any] = {
        "prompt": prompt,
        "image": Image.fromarray(np.ascontiguousarray(image)),
        "num_inference_steps": source.steps,
        reference.guidance_arg: source.guidance,
        "generator": torch.Generator().manual_seed(seed),  # CPU noise: the same on any device
        **source.options,
    }
    if reference.family == "flux_kontext":
        call |= {"height": size, "width": size, "max_area": size * size, "_auto_resize": False}
    elif reference.family == "qwen_image_edit":
        call |= {"height": size, "width": size}
    held = condition_area(pipeline, size) if reference.family == "qwen_image_edit" else nullcontext()
    with held, torch.inference_mode():
        output = pipeline(**call).images[0]
    return np.asarray(output.convert("RGB"), dtype=np.uint8)


@contextmanager
def condition_area(pipeline: Any, size: int) -> Iterator[None]:
    """Inside, a Qwen edit pipeline sizes its condition images for S^2 pixels instead of about 1024^2.

    Both pipelines size them with their module's `calculate_dimensions(target_area, ratio)` and no
    argument to change the area, so the function is wrapped for the call: every area becomes S^2,
    except the -2509 VL condition (`CONDITION_IMAGE_SIZE`, 384^2), which only shrinks to S^2 when S is
    smaller. A renderer renders one item at a time (a Ray actor runs one call at a time), so the
    module-level swap is seen by no other call.
    """
    module: Any = sys.modules[type(pipeline).__module__]  # the pipeline's own module, whichever of the two
    original = module.calculate_dimensions
    condition = getattr(module, "CONDITION_IMAGE_SIZE", None)

    def held(target_area: int, ratio: float) -> Any:
        area = min(target_area, size * size) if target_area == condition else size * size
        return original(area, ratio)

    module.calculate_dimensions = held
    try:
        yield
    finally:
        module.calculate_dimensions = original

"""The bench's renderer: loads what a `RenderSource` names once, then turns `RenderItem`s into PNG bytes.

- A policy of this project (kinds "run", "checkpoint", "preset"): built from its `PolicySpec`, the
  EMA adapter weights (run, checkpoint) loaded as the sampling adapter, sampled with the project's
  own sampler (`encode_conditions`, `sample`, `decode`); a preset samples the frozen base (no adapter).
- A diffusers pipeline (kind "diffusers"): its own `__call__` with the reference inference settings
  (`workers.bench_pipelines`).

Images are uint8 (S, S, 3) in and out, S = the source's `size`; an item's noise comes from its seed
alone (`workers.bench_tasks.item_seed`), so an item renders the same pixels in any subset or order,
on any actor or in any process. `workers.bench_generate` runs it as a Ray actor, or in-process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from motionnft.contracts.images import encode_image_bytes
from motionnft.data.records import resize
from workers.bench_pipelines import load_pipeline, run_pipeline
from workers.bench_tasks import RenderItem, RenderResult, RenderSource, describe
from workers.policies.base import SAMPLING
from workers.policies.factory import build_policy

Editor = Callable[[RenderItem], np.ndarray]  # one item -> its edit, uint8 (H, W, 3)


class RendererError(RuntimeError):
    """The renderers cannot go on: one could not load its model (a bad checkpoint, a size the model
    refuses, no memory), or every one of them died. Not any item's failure."""


class Renderer:
    """Loads the source's model once on `device`; renders items one by one (a Ray actor, or in-process)."""

    def __init__(self, source: RenderSource, device: str = "cpu") -> None:
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()  # a bar per component and per item buries the progress line
        transformers_logging.disable_progress_bar()
        self.source, self.device = source, device
        try:
            self._edit = self._policy_editor() if source.policy is not None else self._pipeline_editor()
        except Exception as exc:  # whatever the model's loaders raise: one message naming the source
            raise RendererError(f"cannot load {source.spec} ({source.kind}): {describe(exc)}") from exc

    def ready(self) -> str:
        """The device the model sits on (a Ray caller waits on this to know the actor loaded)."""
        return self.device

    def render(self, items: list[RenderItem]) -> list[RenderResult]:
        """Each item's PNG, or its error: one item that fails does not stop the others."""
        results = []
        for item in items:
            started = time.perf_counter()
            try:
                png = encode_image_bytes(self._held(self._edit(item)))
                results.append(RenderResult(item.id, png, seconds=time.perf_counter() - started))
            except Exception as exc:  # a bad item or a failed forward: recorded, never fatal
                results.append(RenderResult(item.id, None, describe(exc), time.perf_counter() - started))
        return results

    def _held(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> (S, S, 3): a pipeline that rounds S to its multiple is resized back."""
        return resize(pixels, self.source.size, self.source.size)  # a no-op at S x S

    def _policy_editor(self) -> Editor:
        """The project's sampler on the source's policy, with its EMA adapter (or the frozen base)."""
        source = self.source
        assert source.policy is not None
        policy = build_policy(source.policy, size=source.size, device=self.device)
        adapter = None
        if source.adapter is not None:
            policy.load_adapter_state(SAMPLING, source.adapter)
            adapter = SAMPLING

        @torch.inference_mode()
        def edit(item: RenderItem) -> np.ndarray:
            conditions = policy.encode_conditions([item.prompt], item.image[None])
            latents = policy.sample(conditions, [item.seed], adapter=adapter, steps=source.steps,
                                    guidance=source.guidance or 0.0)  # fmt: skip
            return policy.decode(latents)[0]

        return edit

    def _pipeline_editor(self) -> Editor:
        """The diffusers pipeline's own `__call__` with the reference settings."""
        pipeline = load_pipeline(self.source, self.device)
        return lambda item: run_pipeline(pipeline, self.source, item.prompt, item.image, item.seed)

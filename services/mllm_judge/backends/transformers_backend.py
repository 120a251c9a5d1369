"""The `transformers` judge: a local Qwen2-VL / Qwen2.5-VL checkpoint read from the logits it gives.

Per question the model sees one user turn (the question's images in order, then its prompt) and the
generation prompt; the answer is the softmax over the logits of the question's choice tokens at the
position where the first answer token would be generated (docs/method.md section 3). A "describe"
question (`describe`) is answered by greedy generation instead. Nothing is sampled. The model calls
themselves are in `transformers_model.py`.

Questions from concurrent requests are coalesced by a `MicroBatcher` into one padded forward on a
single worker thread. Padding is on the LEFT so that the last position (index -1) is the generation
position of every row. A question that cannot be asked (bad image, a choice that is not one token,
a prompt that smuggles in special tokens) fails alone with a `JudgeFailure`; so does every question
of a batch whose forward raised, but only after each was retried alone.

Both kinds share the batcher (and so the worker thread and the model): a batch's choice questions
make one forward, its describe questions one `generate` per token budget.

Shapes: images arrive uint8 (H, W, 3); the processor turns them into patch rows; the model returns
logits (B, 1, vocab) for the last position only (`logits_to_keep=1`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from motionnft.judge_scores import COMPARE_CHOICES, RATING_CHOICES
from services.mllm_judge.backends.base import Answer, JudgeFailure, JudgeQuestion, TextAnswer
from services.mllm_judge.backends.transformers_model import Prepared, choice_distributions, greedy_texts
from services.serving.batching import MicroBatcher, Overloaded

log = logging.getLogger(__name__)

_DTYPES = ("float32", "bfloat16", "float16")


class ChoiceTokenError(ValueError):
    """A choice is not exactly one token of this model's tokenizer, so its probability is undefined."""


@dataclass(frozen=True)
class _Describe:
    """A batcher item asking for text: the question and its token budget."""

    question: JudgeQuestion
    max_tokens: int


_Item = JudgeQuestion | _Describe
_Run = Callable[[list[Prepared]], Sequence[list[float] | str | Exception]]  # one model call over a batch


class TransformersJudge:
    """Judge backend over a local Qwen2-VL class checkpoint (`name="transformers"`)."""

    name = "transformers"
    is_language_model = True

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        max_batch: int = 16,
        max_queue: int = 1024,
        max_wait_s: float = 0.005,
        max_image_side: int | None = 1024,
    ) -> None:
        """Remember the settings; loading happens in `load()`.

        Args:
            model_path: local checkpoint directory (config, weights, processor, chat template).
            device: torch device string, e.g. "cpu" or "cuda:0".
            dtype: "float32", "bfloat16" or "float16".
            max_batch: questions per forward.
            max_queue: questions waiting before `answer` raises `Overloaded`.
            max_wait_s: seconds the batcher waits for more questions after the first one.
            max_image_side: images whose longer side exceeds this many pixels are downsized (aspect
                ratio kept) before the processor, bounding vision tokens; None keeps sizes.
        """
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        self.model_path = Path(model_path)
        self.model = str(model_path)
        self.device = device
        self.dtype = dtype
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.max_image_side = max_image_side
        self._processor: Any = None
        self._model: Any = None
        self._batcher: MicroBatcher[_Item, list[float] | str] | None = None
        self._choice_ids: dict[tuple[str, ...], tuple[int, ...]] = {}
        self._special_tokens: tuple[str, ...] = ()

    async def load(self) -> None:
        """Load processor and weights off the event loop, check the standard choices, start batching.

        Raises ChoiceTokenError when "0".."5" or "A"/"B" are not single tokens of the tokenizer.
        """
        await asyncio.to_thread(self._load_sync)
        self._batcher = MicroBatcher(
            self._process,
            max_batch_cost=self.max_batch,
            max_wait_s=self.max_wait_s,
            max_queue_cost=self.max_queue,
            name="transformers-judge",
        )
        self._batcher.start()

    def _load_sync(self) -> None:
        # transformers is imported here, not at module import: the other backends never need it.
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(self.model_path, local_files_only=True)
        processor.tokenizer.padding_side = "left"  # index -1 is then every row's generation position
        self._processor = processor
        added = processor.tokenizer.added_tokens_decoder.values()
        self._special_tokens = tuple(token.content for token in added if token.special)
        # Check the tokenizer before the weights: an unusable checkpoint fails fast.
        for choices in (RATING_CHOICES, COMPARE_CHOICES):
            self.choice_token_ids(choices)
        model: Any = AutoModelForImageTextToText.from_pretrained(
            self.model_path, dtype=getattr(torch, self.dtype), local_files_only=True
        )
        self._model = model.to(self.device).eval()

    def choice_token_ids(self, choices: Sequence[str]) -> tuple[int, ...]:
        """The tokenizer's id of each choice (same order); cached per choices tuple.

        Raises ChoiceTokenError when a choice does not encode to exactly one token.
        """
        key = tuple(choices)
        if key in self._choice_ids:
            return self._choice_ids[key]
        if self._processor is None:
            raise RuntimeError("the transformers judge is not loaded")
        tokenizer = self._processor.tokenizer
        ids: list[int] = []
        for choice in key:
            encoded = tokenizer.encode(choice, add_special_tokens=False)
            if len(encoded) != 1:
                raise ChoiceTokenError(
                    f"choice {choice!r} is {len(encoded)} tokens {encoded} for the tokenizer of "
                    f"{self.model}, not one: its probability cannot be read from one logit"
                )
            ids.append(int(encoded[0]))
        if len(set(ids)) != len(ids):
            raise ChoiceTokenError(f"choices {list(key)} share token ids {ids}")
        self._choice_ids[key] = tuple(ids)
        return self._choice_ids[key]

    async def answer(self, questions: Sequence[JudgeQuestion]) -> list[Answer]:
        """One Answer per question, in order: choice probabilities (summing to 1) or a JudgeFailure.

        Raises Overloaded (before queueing anything) when the whole call does not fit in the queue,
        so the service can answer 503 instead of failing each item.
        """
        answers: list[Answer] = []
        for result in await self._submit(questions):
            answers.append(JudgeFailure(f"not a distribution: {result[:50]!r}") if isinstance(result, str) else result)
        return answers

    async def describe(self, questions: Sequence[JudgeQuestion], max_tokens: int) -> list[TextAnswer]:
        """Per question, in order, its greedy text answer (at most `max_tokens` new tokens) or a JudgeFailure.

        Raises Overloaded like `answer`.
        """
        results = await self._submit([_Describe(q, max_tokens) for q in questions])
        return [r if isinstance(r, str | JudgeFailure) else JudgeFailure("not a text answer") for r in results]

    async def _submit(self, items: Sequence[_Item]) -> list[list[float] | str | JudgeFailure]:
        batcher = self._batcher
        if batcher is None:
            raise RuntimeError("the transformers judge is not loaded; call load() first")
        if batcher.queued_cost and batcher.queued_cost + len(items) > self.max_queue:
            raise Overloaded(f"judge queue is full ({batcher.queued_cost} questions queued)")
        results = await asyncio.gather(*(batcher.submit(item) for item in items), return_exceptions=True)
        answers: list[list[float] | str | JudgeFailure] = []
        for result in results:
            if isinstance(result, JudgeFailure):
                answers.append(result)
            elif isinstance(result, BaseException):
                answers.append(JudgeFailure(f"{type(result).__name__}: {result}"))
            else:
                answers.append(result)
        return answers

    async def close(self) -> None:
        """Finish queued questions, stop the worker thread, drop the model (and its GPU memory)."""
        if self._batcher is not None:
            await self._batcher.stop()
            self._batcher = None
        on_cuda = self._model is not None and str(self.device).startswith("cuda")
        self._model = None
        self._processor = None
        self._choice_ids.clear()
        if on_cuda:
            import torch

            torch.cuda.empty_cache()

    # --- worker thread -------------------------------------------------------------------------

    def _process(self, items: Sequence[_Item]) -> list[list[float] | str | Exception]:
        """The batcher's `process`: validate each item; one forward for the valid choice questions and
        one `generate` per token budget for the valid describe questions."""
        results: list[list[float] | str | Exception | None] = []
        ready: dict[int, Prepared] = {}
        for i, item in enumerate(items):
            try:
                ready[i] = self._prepare(item.question if isinstance(item, _Describe) else item)
                results.append(None)
            except Exception as exc:
                results.append(JudgeFailure(f"question not askable: {exc}"))
        runs: dict[int | None, list[int]] = {}  # token budget (None: a choice question) -> rows
        for i in ready:
            item = items[i]
            runs.setdefault(item.max_tokens if isinstance(item, _Describe) else None, []).append(i)
        for budget, rows in runs.items():
            run: _Run = self._forward if budget is None else partial(self._generate, max_new_tokens=budget)
            for i, result in zip(rows, self._isolated(run, [ready[i] for i in rows]), strict=True):
                results[i] = result
        return [r if r is not None else JudgeFailure("question was not asked") for r in results]

    def _isolated(self, run: _Run, ready: list[Prepared]) -> list[list[float] | str | Exception]:
        try:
            return list(run(ready))
        except Exception as exc:
            if len(ready) == 1:
                log.exception("transformers judge: model call failed")
                return [JudgeFailure(f"forward failed: {type(exc).__name__}: {exc}")]
            # One unforeseen bad input must not sink its batch-mates: ask each question alone.
            log.warning("transformers judge: batch of %d failed (%s); retrying one at a time", len(ready), exc)
            return [result for p in ready for result in self._isolated(run, [p])]

    def _prepare(self, question: JudgeQuestion) -> Prepared:
        for token in self._special_tokens:
            if token in question.prompt:
                # It would be tokenised as the control token itself (a fake image slot or turn end).
                raise ValueError(f"prompt contains the special token {token!r}")
        try:
            choice_ids = self.choice_token_ids(question.choices)
        except ChoiceTokenError as exc:
            raise JudgeFailure(str(exc)) from exc
        images = [self._to_pil(i, image) for i, image in enumerate(question.images)]
        content: list[dict[str, Any]] = [{"type": "image"} for _ in images]
        content.append({"type": "text", "text": question.prompt})
        return Prepared([{"role": "user", "content": content}], images, choice_ids)

    def _to_pil(self, index: int, image: np.ndarray) -> Image.Image:
        """uint8 (H, W, 3) -> RGB PIL image, longer side at most `max_image_side` pixels."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise ValueError(f"image {index} must be a uint8 array, got {getattr(image, 'dtype', type(image))}")
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            raise ValueError(f"image {index} must be (H, W, 3), got shape {image.shape}")
        pil = Image.fromarray(np.ascontiguousarray(image))  # (H, W, 3) uint8 is RGB
        height, width = image.shape[:2]
        limit = self.max_image_side
        if limit is not None and max(height, width) > limit:
            scale = limit / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            pil = pil.resize(size, Image.Resampling.BICUBIC)
        return pil

    def _forward(self, ready: Sequence[Prepared]) -> list[list[float] | Exception]:
        return choice_distributions(self._processor, self._model, self.device, ready)

    def _generate(self, ready: Sequence[Prepared], max_new_tokens: int) -> list[str | Exception]:
        return greedy_texts(self._processor, self._model, self.device, ready, max_new_tokens)

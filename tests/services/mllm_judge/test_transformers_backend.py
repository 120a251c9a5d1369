"""TransformersJudge on a tiny random Qwen2-VL (CPU): images + prompt -> choice distribution, token ids
from the tokenizer, left-padded batches equal single questions and a hand-run forward, coalescing of
concurrent calls, bit-exact reload, per-question failures, and the curation questions: yes/no and
category distributions, and greedy text (random weights write garbage: only its type is checked)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from motionnft.judge_scores import COMPARE_CHOICES, RATING_CHOICES, YESNO_CHOICES, distribution_from_logits
from services.mllm_judge.backends.base import JudgeFailure, JudgeQuestion, TextAnswer
from services.mllm_judge.backends.transformers_backend import ChoiceTokenError, TransformersJudge
from services.mllm_judge.rubrics import CATEGORY, CRITERIA, SUMMARY, Rubric
from tests.services.mllm_judge.tiny_qwen2vl import build_tiny_qwen2vl

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the MicroBatcher is asyncio-only


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny_qwen2vl"))


@pytest.fixture
async def judge(tiny_model_dir: Path) -> AsyncIterator[TransformersJudge]:
    backend = TransformersJudge(tiny_model_dir, max_batch=16, max_wait_s=0.05)
    await backend.load()
    yield backend
    await backend.close()


def image(seed: int, height: int = 64, width: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def rating(seed: int, instruction: str = "make the cat jump") -> JudgeQuestion:
    return JudgeQuestion(
        kind="rating",
        rubric="edit",
        rubric_version="1",
        prompt=f"Here are two images: the original and the edited version.\nInstruction: {instruction}\n0-5",
        images=(image(seed), image(seed + 1, 48, 80)),
        choices=RATING_CHOICES,
    )


def compare(seed: int) -> JudgeQuestion:
    return JudgeQuestion(
        kind="compare",
        rubric="edit",
        rubric_version="1",
        prompt="Original, then edit A, then edit B. Which follows 'raise the arm' better? Answer A or B.",
        images=(image(seed), image(seed + 1), image(seed + 2, 96, 40)),
        choices=COMPARE_CHOICES,
    )


def distributions(answers: Sequence[object]) -> list[list[float]]:
    assert all(isinstance(a, list) for a in answers), answers
    return [a for a in answers if isinstance(a, list)]


async def test_rating_and_compare_in_one_batch_give_distributions(judge: TransformersJudge) -> None:
    assert (judge.name, judge.model, judge.is_language_model) == ("transformers", str(judge.model_path), True)
    rated, compared = distributions(await judge.answer([rating(0), compare(10)]))
    assert len(rated) == 6 and len(compared) == 2
    for dist in (rated, compared):
        assert sum(dist) == pytest.approx(1.0, abs=1e-12)
        assert all(0.0 < p < 1.0 for p in dist)


async def test_choice_ids_come_from_the_tokenizer(judge: TransformersJudge) -> None:
    tokenizer = judge._processor.tokenizer
    for choices in (RATING_CHOICES, COMPARE_CHOICES):
        assert judge.choice_token_ids(choices) == tuple(tokenizer.convert_tokens_to_ids(list(choices)))
    with pytest.raises(ChoiceTokenError, match="'10'"):
        judge.choice_token_ids(("5", "10"))
    two_token = replace(rating(0), choices=("5", "10"))
    failed, answered = await judge.answer([two_token, rating(0)])
    assert isinstance(failed, JudgeFailure) and "'10'" in str(failed)
    assert isinstance(answered, list) and len(answered) == 6


async def test_load_fails_when_the_vocabulary_cannot_spell_a_choice(tmp_path: Path) -> None:
    backend = TransformersJudge(build_tiny_qwen2vl(tmp_path, missing_tokens=("A",)))
    with pytest.raises(ChoiceTokenError, match="'A' is 0 tokens"):
        await backend.load()
    await backend.close()


async def test_batched_equals_one_at_a_time_and_a_hand_run_forward(judge: TransformersJudge) -> None:
    # Different prompt lengths and image counts force left padding in the batch.
    questions = [rating(0), compare(20), rating(30, "turn the head to the left, slowly"), compare(40)]
    together = distributions(await judge.answer(questions))
    alone = [distributions(await judge.answer([q]))[0] for q in questions]
    for batched, single in zip(together, alone, strict=True):
        np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5)

    # By hand: processor + forward + softmax over the choice logits at the generation position.
    processor, model, question = judge._processor, judge._model, questions[1]
    messages = [{"role": "user", "content": [{"type": "image"}] * 3 + [{"type": "text", "text": question.prompt}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 3
    from PIL import Image

    inputs = processor(text=[text], images=[Image.fromarray(i) for i in question.images], return_tensors="pt")
    ids = [processor.tokenizer.convert_tokens_to_ids(c) for c in COMPARE_CHOICES]
    with torch.inference_mode():
        last = model(**inputs, use_cache=False, logits_to_keep=1).logits[0, -1]  # (vocab,)
        every = model(**inputs, use_cache=False).logits[0, -1]  # all positions through lm_head
    # Same computation as the backend's single-question forward: bit-exact.
    assert alone[1] == distribution_from_logits(last[ids].tolist())
    # Independent of logits_to_keep and of the score helper: float32 GEMM shapes differ, so 1e-6.
    expected = torch.softmax(every[ids].double(), dim=0).tolist()
    np.testing.assert_allclose(alone[1], expected, rtol=0, atol=1e-6)


async def test_concurrent_calls_are_coalesced(judge: TransformersJudge) -> None:
    assert judge._batcher is not None
    seen: list[int] = []
    process = judge._batcher.process

    def recording(items: Sequence[JudgeQuestion]) -> list[list[float] | Exception]:
        seen.append(len(items))
        return process(items)

    judge._batcher.process = recording
    calls = [judge.answer([rating(i)]) for i in range(6)] + [judge.answer([compare(50), compare(60)])]
    results = await asyncio.gather(*calls)
    assert all(isinstance(a, list) for answers in results for a in answers)
    assert sum(seen) == 8 and max(seen) > 1, seen


async def test_reload_is_bit_exact(tiny_model_dir: Path) -> None:
    questions = [rating(0), compare(10)]
    runs = []
    for _ in range(2):
        backend = TransformersJudge(tiny_model_dir)
        await backend.load()
        runs.append(distributions(await backend.answer(questions)))
        await backend.close()
    assert runs[0] == runs[1]
    again = build_tiny_qwen2vl(tiny_model_dir.parent / "rebuilt")  # seeded: the same weights
    backend = TransformersJudge(again)
    await backend.load()
    assert distributions(await backend.answer(questions)) == runs[0]
    await backend.close()


async def test_bad_question_fails_alone(judge: TransformersJudge) -> None:
    good = rating(0)
    float_image = replace(good, images=(image(0).astype(np.float32), image(1)))
    gray_image = replace(good, images=(image(0)[..., 0], image(1)))
    smuggled = replace(good, prompt="rate <|image_pad|> this")
    answers = await judge.answer([float_image, good, gray_image, smuggled, compare(10)])
    assert [type(a) for a in answers] == [JudgeFailure, list, JudgeFailure, JudgeFailure, list]
    assert "uint8" in str(answers[0]) and "(H, W, 3)" in str(answers[2]) and "<|image_pad|>" in str(answers[3])
    np.testing.assert_allclose(answers[1], distributions(await judge.answer([good]))[0], rtol=0, atol=1e-5)


async def test_large_images_are_downsized_before_the_processor(tiny_model_dir: Path) -> None:
    backend = TransformersJudge(tiny_model_dir, max_image_side=32)
    pil = backend._to_pil(0, image(0, 40, 100))
    assert pil.size == (32, 13)  # (width, height): aspect ratio kept
    assert backend._to_pil(1, image(1, 20, 30)).size == (30, 20)  # small images are left alone


async def test_answer_before_load_raises(tiny_model_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="not loaded"):
        await TransformersJudge(tiny_model_dir).answer([rating(0)])


def curation(rubric: Rubric, seed: int) -> JudgeQuestion:
    return JudgeQuestion(
        kind=rubric.kind, rubric=rubric.name, rubric_version=rubric.version, prompt=rubric.template,
        images=(image(seed), image(seed + 1, 48, 80)), choices=rubric.choices,
    )  # fmt: skip


def assert_text_or_empty(told: TextAnswer) -> None:
    if isinstance(told, JudgeFailure):
        assert "empty" in str(told)  # random weights may stop at once
    else:
        assert isinstance(told, str) and told and told == told.strip()


async def test_curation_questions_give_distributions_over_their_choices(judge: TransformersJudge) -> None:
    tokenizer = judge._processor.tokenizer
    assert judge.choice_token_ids(YESNO_CHOICES) == tuple(tokenizer.convert_tokens_to_ids(["Yes", "No"]))
    questions = [curation(rubric, 2 * i) for i, rubric in enumerate([*CRITERIA.values(), CATEGORY])]
    answers = distributions(await judge.answer(questions))
    assert [len(a) for a in answers] == [2, 2, 2, 2, 6]
    for dist in answers:
        assert sum(dist) == pytest.approx(1.0, abs=1e-12) and all(0.0 < p < 1.0 for p in dist)


async def test_describe_is_greedy_text_and_batches_like_alone(judge: TransformersJudge) -> None:
    questions = [curation(SUMMARY, 10), replace(curation(SUMMARY, 20), prompt="What moved?")]
    together = await judge.describe(questions, max_tokens=6)
    for told in together:
        assert_text_or_empty(told)
    alone = [(await judge.describe([q], max_tokens=6))[0] for q in questions]
    assert [str(t) for t in together] == [str(t) for t in alone]  # greedy: nothing is sampled
    again = await judge.describe(questions, max_tokens=6)
    assert [str(t) for t in again] == [str(t) for t in together]


async def test_describe_and_answer_share_the_batcher(judge: TransformersJudge) -> None:
    assert judge._batcher is not None
    seen: list[int] = []
    process = judge._batcher.process

    def recording(items: Sequence[object]) -> list[object]:
        seen.append(len(items))
        return process(items)  # type: ignore[arg-type]

    judge._batcher.process = recording  # type: ignore[assignment]
    smuggled = replace(curation(SUMMARY, 30), prompt="say <|im_end|> then stop")
    rated, told = await asyncio.gather(
        judge.answer([curation(CATEGORY, 0), rating(1)]),
        judge.describe([curation(SUMMARY, 40), smuggled], max_tokens=4),
    )
    assert [len(a) for a in distributions(rated)] == [6, 6]
    assert_text_or_empty(told[0])
    assert isinstance(told[1], JudgeFailure) and "<|im_end|>" in str(told[1])  # fails alone
    assert sum(seen) == 4 and max(seen) > 1, seen

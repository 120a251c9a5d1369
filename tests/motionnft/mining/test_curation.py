"""The judge stage: the verdict from a curate result, and judge_window against the real judge service
(openai backend) in front of the fake upstream answering like a judge of the test corpus."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.fake_upstream import ChatCompletionsUpstream
from motionnft.contracts.client import JudgeClient
from motionnft.contracts.judge import CategoryGuess, CurateResult, MotionSummary, RubricScore
from motionnft.mining.curation import judge_window, verdict
from motionnft.mining.examine import Examined, examine_video
from motionnft.mining.instructions import InstructionWriter
from motionnft.mining.manifest import WindowRecord
from motionnft.mining.settings import MiningSettings
from tests.motionnft.mining.corpus_judge import INSTRUCTION, SUMMARY, CorpusJudge, judge_in_thread


def yes(p: float) -> RubricScore:
    return RubricScore(score=p, raw=p, levels=[p, 1 - p])


def result(**criteria: RubricScore) -> CurateResult:
    scores = {"stable": yes(0.9), "motion": yes(0.8), "intact": yes(0.7), "quality": yes(0.95), **criteria}
    probs = {"pose": 0.1, "locomotion": 0.9}
    return CurateResult(criteria=scores, category=CategoryGuess(category="locomotion", probs=probs),
                        summary=MotionSummary(text="The cup slides right."))  # fmt: skip


def test_verdict_keeps_when_every_criterion_passes() -> None:
    status, reason, measures, note = verdict(result(), 0.5)
    assert (status, reason, note) == ("kept", None, None)
    assert measures == {"judge_stable": 0.9, "judge_motion": 0.8, "judge_intact": 0.7, "judge_quality": 0.95,
                        "judge_category_p": 0.9}  # fmt: skip


def test_verdict_names_the_first_failing_criterion() -> None:
    assert verdict(result(intact=yes(0.2), quality=yes(0.1)), 0.5)[:2] == ("rejected", "judge:intact")
    assert verdict(result(stable=yes(0.49)), 0.5)[:2] == ("rejected", "judge:stable")
    assert verdict(result(stable=yes(0.49)), 0.4)[:2] == ("kept", None)


def test_a_failed_question_leaves_the_window_undecided() -> None:
    status, reason, measures, note = verdict(result(motion=RubricScore(error="upstream timed out")), 0.5)
    assert (status, reason) == ("undecided", "judge_error")
    assert note is not None and "motion: upstream timed out" in note and "judge_motion" not in measures
    broken = result()
    broken.summary = MotionSummary(error="empty answer")
    assert verdict(broken, 0.5)[:2] == ("undecided", "judge_error")


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[ChatCompletionsUpstream, str]]:
    with judge_in_thread() as running:
        yield running


def passed(corpus: Path, name: str) -> Examined:
    [examined] = examine_video(str(corpus / name), MiningSettings()).windows[:1]
    assert examined.reason is None
    return examined


def judged(examined: Examined, judge_url: str, writer_url: str | None) -> WindowRecord:
    async def run() -> WindowRecord:
        async with JudgeClient(judge_url) as judge:
            writer = InstructionWriter(writer_url, "writer") if writer_url else None
            try:
                return await judge_window(examined, judge, writer, MiningSettings())
            finally:
                if writer is not None:
                    await writer.aclose()

    return asyncio.run(run())


def test_a_smooth_clip_is_kept_with_the_judges_category_and_the_writers_instruction(
    mining_corpus: Path, services: tuple[ChatCompletionsUpstream, str]
) -> None:
    upstream, judge_url = services
    record = judged(passed(mining_corpus, "smooth_motion.mp4"), judge_url, upstream.base_url)
    assert (record.status, record.reason, record.judged) == ("kept", None, True)
    assert (record.category, record.summary, record.instruction, record.instruction_source) == (
        "locomotion", SUMMARY, INSTRUCTION, "writer")  # fmt: skip
    assert record.measures["judge_stable"] == pytest.approx(0.9)
    assert record.measures["judge_category_p"] == pytest.approx(0.8)


def test_the_occluded_clip_is_rejected_by_the_judge(
    mining_corpus: Path, services: tuple[ChatCompletionsUpstream, str]
) -> None:
    upstream, judge_url = services
    record = judged(passed(mining_corpus, "occluded.mp4"), judge_url, upstream.base_url)
    assert (record.status, record.reason, record.id, record.instruction) == ("rejected", "judge:intact", None, None)
    assert record.measures["judge_intact"] == pytest.approx(0.05 / 1.0)


def test_without_a_writer_or_with_a_bad_answer_the_template_stands_in(
    mining_corpus: Path, services: tuple[ChatCompletionsUpstream, str]
) -> None:
    upstream, judge_url = services
    examined = passed(mining_corpus, "smooth_motion.mp4")
    record = judged(examined, judge_url, None)
    assert (record.instruction_source, record.instruction) == (
        "template", "Move the subject at the left of the picture to the right.")  # fmt: skip
    corpus_judge(upstream).writer_answer = "The patch moves right."
    try:
        record = judged(examined, judge_url, upstream.base_url)
    finally:
        corpus_judge(upstream).writer_answer = INSTRUCTION
    assert (record.status, record.instruction_source) == ("kept", "template")
    assert record.note is not None and "a description, not an instruction" in record.note


def test_failed_services_leave_the_window_undecided(
    mining_corpus: Path, services: tuple[ChatCompletionsUpstream, str]
) -> None:
    upstream, judge_url = services
    examined = passed(mining_corpus, "smooth_motion.mp4")
    examined.first = examined.first[:, ::-1].copy()  # other pixels: nothing comes from the judge's cache
    fake = corpus_judge(upstream)
    try:
        fake.failing = {"judge"}
        record = judged(examined, judge_url, None)
        assert (record.status, record.reason, record.id) == ("undecided", "judge_error", None)
        assert record.note is not None and "judge call failed" in record.note
        fake.failing = {"writer"}
        record = judged(examined, judge_url, upstream.base_url)
        assert (record.status, record.reason, record.id) == ("undecided", "writer_error", None)
        assert record.measures["judge_stable"] == pytest.approx(0.9)  # the judge's answers stay in the trace
    finally:
        fake.failing = set()


def corpus_judge(upstream: ChatCompletionsUpstream) -> CorpusJudge:
    assert isinstance(upstream.responder, CorpusJudge)
    return upstream.responder

"""The judge stage of a window that passed the prefilter: curation criteria, category, summary, and the
instruction; the result is the window's manifest record.

Decision (docs/mining.md): kept when every criterion of ``CURATION_CRITERIA`` has P(Yes) of at least
``settings.judge_threshold``; otherwise rejected with ``judge:<first failing criterion>``. Any
question the judge could not answer, or a writer that failed, leaves the window ``undecided``: a
failure says nothing about the pair, so it is neither kept nor called bad, and a re-run asks again.
"""

from __future__ import annotations

from typing import Any

from motionnft.contracts.client import JudgeClient
from motionnft.contracts.images import encode_image
from motionnft.contracts.judge import CURATION_CRITERIA, CurateItem, CurateRequest, CurateResult
from motionnft.contracts.problems import ServiceError
from motionnft.mining.examine import Examined
from motionnft.mining.instructions import (
    InstructionRejected,
    InstructionWriter,
    check_instruction,
    template_instruction,
)
from motionnft.mining.manifest import Status, WindowRecord, pair_id
from motionnft.mining.settings import MiningSettings


def prefilter_record(examined: Examined) -> WindowRecord:
    """The record of a window the prefilter rejected (or could not read)."""
    status: Status = "unreadable" if examined.reason == "decode_error" else "rejected"
    w = examined.window
    return WindowRecord(video=examined.video, start_s=w.start_s, end_s=w.end_s, status=status,
                        reason=examined.reason, measures=examined.measures, note=examined.error)  # fmt: skip


def unjudged_record(examined: Examined) -> WindowRecord:
    """A window that passed the prefilter, kept without a judge: ``judged`` false, template instruction."""
    w = examined.window
    return WindowRecord(
        video=examined.video, start_s=w.start_s, end_s=w.end_s, status="kept", judged=False,
        measures=examined.measures, id=pair_id(examined.video, w.start_s),
        instruction=template_instruction(examined.measures), instruction_source="template",
    )  # fmt: skip


def verdict(result: CurateResult, threshold: float) -> tuple[Status, str | None, dict[str, float], str | None]:
    """(status, reason, judge measures, note) from one curate result; pure.

    Judge measures are ``judge_<criterion>`` = P(Yes) and ``judge_category_p``, for every answer there is.
    """
    measures = {f"judge_{name}": round(s.score, 6) for name, s in result.criteria.items() if s.score is not None}
    errors = [f"{name}: {s.error}" for name, s in result.criteria.items() if s.error is not None]
    if result.category.error is not None:
        errors.append(f"category: {result.category.error}")
    elif result.category.probs and result.category.category:
        measures["judge_category_p"] = round(result.category.probs[result.category.category], 6)
    if result.summary is not None and result.summary.error is not None:
        errors.append(f"summary: {result.summary.error}")
    missing = [name for name in CURATION_CRITERIA if name not in result.criteria]
    if errors or missing:
        note = "; ".join(errors + [f"{name}: not answered" for name in missing])
        return "undecided", "judge_error", measures, note
    for name in CURATION_CRITERIA:
        if measures[f"judge_{name}"] < threshold:
            return "rejected", f"judge:{name}", measures, None
    return "kept", None, measures, None


async def judge_window(
    examined: Examined, judge: JudgeClient, writer: InstructionWriter | None, settings: MiningSettings
) -> WindowRecord:
    """Ask the judge about a prefilter-passed window, then the writer for its instruction; never raises
    for a service failure (that is an ``undecided`` record)."""
    assert examined.first is not None and examined.last is not None, "a passed window keeps its frames"
    w = examined.window

    def record(status: Status, **fields: Any) -> WindowRecord:
        return WindowRecord(video=examined.video, start_s=w.start_s, end_s=w.end_s, judged=True, status=status,
                            **fields)  # fmt: skip

    item = CurateItem(id=pair_id(examined.video, w.start_s), first=encode_image(examined.first),
                      last=encode_image(examined.last))  # fmt: skip
    try:
        response = await judge.curate(CurateRequest(items=[item], summary=True))
    except ServiceError as exc:
        return record("undecided", reason="judge_error", measures=examined.measures, note=f"judge call failed: {exc}")
    result = response.items[0]
    status, reason, judge_measures, note = verdict(result, settings.judge_threshold)
    measures = {**examined.measures, **judge_measures}
    if status != "kept":
        return record(status, reason=reason, measures=measures, note=note)
    summary = result.summary.text if result.summary is not None else None
    assert summary is not None, "a kept verdict has a summary"
    instruction, source = template_instruction(examined.measures), "template"
    if writer is not None:
        try:
            instruction, source = check_instruction(await writer.write(summary)), "writer"
        except InstructionRejected as exc:
            note = f"writer answer not used ({exc}); template instead"
        except ServiceError as exc:
            return record("undecided", reason="writer_error", measures=measures, note=f"writer call failed: {exc}")
    return record("kept", measures=measures, id=item.id, category=result.category.category, summary=summary,
                  instruction=instruction, instruction_source=source, note=note)  # fmt: skip

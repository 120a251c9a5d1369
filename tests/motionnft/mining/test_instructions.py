"""Instruction checks, the motion template, and the writer against an OpenAI-compatible stand-in."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.fake_upstream import ChatCompletionsUpstream, error, running_upstream, text_answer
from motionnft.contracts.problems import ServiceError
from motionnft.mining.instructions import (
    InstructionRejected,
    InstructionWriter,
    check_instruction,
    template_instruction,
)


@pytest.mark.parametrize(
    "text",
    ["Make the woman turn her head toward the dog.", '  "Raise the left arm of the man."\n', "Move the cup left."],
)
def test_good_instructions_pass(text: str) -> None:
    assert check_instruction(text) == text.strip().strip('"')


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("The woman turns her head.", "description"),
        ("Turn.", "words"),
        ("Make the woman turn her head toward the dog", "full stop"),
        ("Make her turn. Then smile.", "more than one sentence"),
        ("make the woman turn her head.", "capital"),
        ("Make the woman\nturn her head.", "more than one line"),
        (" ".join(["Move"] * 40) + ".", "words"),
    ],
)
def test_bad_instructions_are_rejected_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(InstructionRejected, match=why):
        check_instruction(text)


@pytest.mark.parametrize(
    ("dx", "dy", "cx", "cy", "expected"),
    [
        (20.0, 0.5, 0.2, 0.5, "Move the subject at the left of the picture to the right."),
        (-1.0, -9.0, 0.5, 0.9, "Move the subject at the bottom of the picture up."),
        (5.0, 5.0, 0.9, 0.1, "Move the subject at the top-right of the picture down and to the right."),
        (-3.0, 3.0, 0.5, 0.5, "Move the subject in the middle of the picture down and to the left."),
    ],
)
def test_template_reads_the_travel_and_the_start(dx: float, dy: float, cx: float, cy: float, expected: str) -> None:
    instruction = template_instruction({"moving_dx": dx, "moving_dy": dy, "moving_cx": cx, "moving_cy": cy})
    assert instruction == expected
    assert check_instruction(instruction) == instruction  # the template passes its own checks


def test_writer_sends_the_summary_and_returns_the_answer() -> None:
    upstream = ChatCompletionsUpstream()
    with running_upstream(upstream) as base_url:
        upstream.script(text_answer("Make the cat turn toward the door."))

        async def ask() -> str:
            async with InstructionWriter(base_url, "writer-model") as writer:
                return await writer.write("The cat turns toward the door.")

        assert asyncio.run(ask()) == "Make the cat turn toward the door."
        body = upstream.completions[-1].body
        assert body["model"] == "writer-model"
        assert body["messages"][-1] == {"role": "user", "content": "The cat turns toward the door."}
        assert body["messages"][0]["role"] == "system"


def test_writer_failure_is_an_error_not_an_instruction() -> None:
    upstream = ChatCompletionsUpstream()
    with running_upstream(upstream) as base_url:
        upstream.script(then=error(500))

        async def ask() -> str:
            async with InstructionWriter(base_url, "writer-model", timeout_s=5.0) as writer:
                return await writer.write("The cat turns.")

        with pytest.raises(ServiceError, match="500"):
            asyncio.run(ask())

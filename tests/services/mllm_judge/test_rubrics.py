"""The judge's prompts: `edit` is docs/method.md section 3's prompt verbatim, instructions go in as plain
text, versions follow the text, and each rubric admits the right answer tokens."""

from __future__ import annotations

import dataclasses
import re

import pytest

from motionnft.judge_scores import COMPARE_CHOICES, RATING_CHOICES
from services.mllm_judge.rubrics import COHERENCE, COMPARE, EDIT, FIDELITY, PRESERVATION, RUBRICS, Rubric

ALL = (EDIT, FIDELITY, PRESERVATION, COHERENCE, COMPARE)

# docs/method.md section 3, with its first sentence (wrapped there for width) on one line.
EDIT_PROMPT = """\
Here are two images: the original and the edited version. Please evaluate the edited image based on the following editing instruction.
Instruction: Make the man raise his left arm
You need to rate the editing result from 0 to 5 based on the accuracy and quality of the edit.
0: The wrong object was edited, or the edit completely fails to follow the instruction.
5: The correct object was edited, the instructions were followed, and the visual result is high quality.
Response Format (Directly response the score number):
0-5"""  # noqa: E501


def test_edit_rubric_is_method_section_3_verbatim() -> None:
    assert EDIT.render("Make the man raise his left arm") == EDIT_PROMPT
    assert EDIT.kind == "rating" and EDIT.name == "edit"


@pytest.mark.parametrize(
    "instruction",
    ["Make the {cat} jump", "{prompt}", "{}", "{0} and {prompt!r:>10}", "Turn {left} } { right", "100% \\n done"],
)
@pytest.mark.parametrize("rubric", ALL, ids=lambda r: r.name)
def test_braces_and_odd_characters_in_the_instruction_are_safe(rubric: Rubric, instruction: str) -> None:
    before, after = rubric.template.split("{prompt}")
    assert rubric.render(instruction) == before + instruction + after


@pytest.mark.parametrize("rubric", ALL, ids=lambda r: r.name)
def test_every_template_has_one_instruction_slot_on_its_own_line(rubric: Rubric) -> None:
    assert rubric.template.count("{prompt}") == 1
    assert "\nInstruction: {prompt}\n" in rubric.template


def test_versions_follow_the_text() -> None:
    for rubric in ALL:
        assert re.fullmatch(rf"{rubric.name}/{rubric.revision}-[0-9a-f]{{8}}", rubric.version), rubric.version
    assert len({r.version for r in ALL}) == len(ALL)
    same = Rubric(EDIT.name, EDIT.revision, EDIT.kind, str(EDIT.template))
    assert same.version == EDIT.version  # a function of the text, not of the object
    for changed in (
        dataclasses.replace(EDIT, template=EDIT.template + " "),
        dataclasses.replace(EDIT, template=EDIT.template.replace("0 to 5", "0 to 10")),
        dataclasses.replace(EDIT, revision=EDIT.revision + 1),
    ):
        assert changed.version != EDIT.version
    # The revision stays readable, the digest changes even when nobody bumps it.
    edited = dataclasses.replace(EDIT, template=EDIT.template.replace("quality", "Quality"))
    assert edited.version.split("-")[0] == EDIT.version.split("-")[0]


@pytest.mark.parametrize("rubric", [EDIT, FIDELITY, PRESERVATION, COHERENCE], ids=lambda r: r.name)
def test_rating_rubrics_admit_the_digits(rubric: Rubric) -> None:
    assert rubric.kind == "rating"
    assert rubric.choices == RATING_CHOICES == ("0", "1", "2", "3", "4", "5")
    assert rubric.template.endswith("Response Format (Directly response the score number):\n0-5")
    assert rubric.template.startswith("Here are two images: the original and the edited version.")


def test_compare_rubric_admits_a_and_b() -> None:
    assert COMPARE.kind == "compare"
    assert COMPARE.choices == COMPARE_CHOICES == ("A", "B")
    assert COMPARE.template.startswith("Here are three images: the original, then edit A, then edit B.")
    assert COMPARE.template.endswith("\nA or B")


def test_the_registry_holds_the_rating_rubrics_by_name() -> None:
    assert list(RUBRICS) == ["edit", "fidelity", "preservation", "coherence"]
    assert all(RUBRICS[name].name == name for name in RUBRICS)
    assert COMPARE.name not in RUBRICS  # comparisons have their own route


def test_rubrics_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EDIT.template = "something else"  # type: ignore[misc]

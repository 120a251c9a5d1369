"""The judge's prompts: `edit` is docs/method.md section 3's prompt verbatim, instructions go in as plain
text, versions follow the text, each rubric admits the right answer tokens, and the curation prompts
show a clip's two frames and ask one question each."""

from __future__ import annotations

import dataclasses
import re

import pytest

from motionnft.contracts.judge import CURATION_CRITERIA, MOTION_CATEGORIES
from motionnft.judge_scores import CATEGORY_CHOICES, COMPARE_CHOICES, RATING_CHOICES, YESNO_CHOICES
from services.mllm_judge.rubrics import (
    CATEGORY,
    COHERENCE,
    COMPARE,
    CRITERIA,
    CURATION_RUBRICS,
    EDIT,
    FIDELITY,
    PRESERVATION,
    RUBRICS,
    Rubric,
)

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


@pytest.mark.parametrize("rubric", list(CURATION_RUBRICS.values()), ids=lambda r: r.name)
def test_curation_rubrics_show_two_frames_and_ask_one_question(rubric: Rubric) -> None:
    assert rubric.template.startswith("Here are two images: the first and the last frame of one short video clip.\n")
    assert rubric.template.count("?") == 1 and "{prompt}" not in rubric.template
    assert re.fullmatch(rf"{re.escape(rubric.name)}/1-[0-9a-f]{{8}}", rubric.version)
    ending = {
        "yesno": "\nAnswer Yes or No.",
        "category": "\nAnswer with the number of the kind that fits best, 1 to 6.",
    }
    if rubric.kind in ending:
        assert rubric.template.endswith(ending[rubric.kind])
    else:
        assert rubric.kind == "describe" and rubric.choices == () and "one short sentence" in rubric.template


def test_curation_rubrics_are_their_own_registry() -> None:
    assert list(CRITERIA) == list(CURATION_CRITERIA)
    assert [r.name for r in CRITERIA.values()] == [f"curation/{c}" for c in CURATION_CRITERIA]
    assert all(r.choices == YESNO_CHOICES == ("Yes", "No") for r in CRITERIA.values())
    assert CATEGORY.choices == CATEGORY_CHOICES == ("1", "2", "3", "4", "5", "6")
    assert not set(CURATION_RUBRICS) & set(RUBRICS)  # the score route does not accept them
    # The category prompt numbers MOTION_CATEGORIES in order.
    lines = [line for line in CATEGORY.template.splitlines() if line[:1].isdigit()]
    assert [line.split(":")[:2] for line in lines] == [[str(k), f" {c}"] for k, c in enumerate(MOTION_CATEGORIES, 1)]

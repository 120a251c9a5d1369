"""docs/rubrics.md shows every rubric's current text and version (the page must stay true), the
curation rubrics included, and explains how curation answers are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from motionnft.contracts.judge import CURATION_CRITERIA
from services.mllm_judge.rubrics import COMPARE, CURATION_RUBRICS, RUBRICS, Rubric

DOC = (Path(__file__).resolve().parents[3] / "docs" / "rubrics.md").read_text()


@pytest.mark.parametrize("rubric", [*RUBRICS.values(), COMPARE, *CURATION_RUBRICS.values()], ids=lambda r: r.name)
def test_doc_shows_current_text_and_version(rubric: Rubric) -> None:
    assert f"## `{rubric.name}` ({rubric.version}, {rubric.kind}," in DOC
    assert f"```text\n{rubric.template}\n```" in DOC


def test_doc_explains_how_curation_is_read() -> None:
    curation = DOC[DOC.index("## Curation") :]
    assert all(f"`curation/{criterion}`" in curation for criterion in CURATION_CRITERIA)
    for phrase in ("P(Yes)", "renormalised over `Yes`/`No`", "argmax", "MLLM_JUDGE_DESCRIBE_MAX_TOKENS"):
        assert phrase in curation

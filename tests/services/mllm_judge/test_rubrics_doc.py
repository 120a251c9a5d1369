"""docs/rubrics.md shows every rubric's current text and version (the page must stay true)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.mllm_judge.rubrics import COMPARE, RUBRICS, Rubric

DOC = (Path(__file__).resolve().parents[3] / "docs" / "rubrics.md").read_text()


@pytest.mark.parametrize("rubric", [*RUBRICS.values(), COMPARE], ids=lambda r: r.name)
def test_doc_shows_current_text_and_version(rubric: Rubric) -> None:
    assert f"## `{rubric.name}` ({rubric.version}," in DOC
    assert f"```text\n{rubric.template}\n```" in DOC

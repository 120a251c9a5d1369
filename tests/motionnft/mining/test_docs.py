"""docs/mining.md lists every setting with its default and reason, and every reason code."""

from __future__ import annotations

from pathlib import Path

from motionnft.mining.manifest import REASONS
from motionnft.mining.settings import MiningSettings

DOC = (Path(__file__).resolve().parents[3] / "docs" / "mining.md").read_text()


def test_every_setting_is_documented_with_its_default_and_reason() -> None:
    for name, field in MiningSettings.model_fields.items():
        assert f"| `{name}` | {field.default} | {field.description} |" in DOC, name


def test_every_reason_code_is_documented() -> None:
    for reason in REASONS:
        assert f"`{reason}`" in DOC, reason

"""``DIR/manifest.jsonl``: one line per candidate window, so every decision can be traced and re-run.

    {"video": "clips/a.mp4", "start_s": 0.0, "end_s": 3.0, "status": "kept", "reason": null,
     "judged": true, "measures": {...}, "id": "a-000000-1f2e3d4c", "category": "pose", ...}

``status`` is ``kept``, ``rejected``, ``undecided`` (the judge or writer failed: never kept, never
called bad; a re-run retries it) or ``unreadable``. ``reason`` is one code of ``REASONS``. Lines are
appended as windows are decided (a killed run loses at most the windows in flight) and the file is
rewritten sorted by (video, start_s), one line per window, when a run ends. Reading takes the last
line of each window, so an interrupted run's file reads the same as a finished one's.

``DIR/mining.json`` holds the settings a manifest was made with; a re-run with other settings is
refused, since it would mix two decisions in one dataset.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from motionnft.contracts.judge import CURATION_CRITERIA
from motionnft.mining.prefilter import PREFILTER_REASONS
from motionnft.mining.settings import MiningSettings

MANIFEST = "manifest.jsonl"
SETTINGS_FILE = "mining.json"
Status = Literal["kept", "rejected", "undecided", "unreadable"]
REASONS: tuple[str, ...] = (
    *PREFILTER_REASONS,
    *(f"judge:{criterion}" for criterion in CURATION_CRITERIA),
    "judge_error",  # undecided: the judge gave no usable answer for some question
    "writer_error",  # undecided: the instruction writer failed
    "decode_error",  # unreadable: the video or a frame of the window cannot be decoded
)


class WindowRecord(BaseModel):
    """One manifest line (module docstring). ``measures`` holds the prefilter's statistics and, once
    judged, ``judge_<criterion>`` = P(Yes) for each curation criterion."""

    model_config = ConfigDict(extra="forbid")

    video: str
    start_s: float
    end_s: float
    status: Status
    reason: str | None = None
    judged: bool = False
    measures: dict[str, float] = Field(default_factory=dict)
    id: str | None = None
    category: str | None = None
    summary: str | None = None
    instruction: str | None = None
    instruction_source: Literal["writer", "template"] | None = None
    note: str | None = Field(default=None, description="What went wrong, for undecided/unreadable, or why the "
                             "writer's answer was not used.")  # fmt: skip

    @property
    def key(self) -> tuple[str, float]:
        return self.video, self.start_s


def pair_id(video: str, start_s: float) -> str:
    """A stable dataset id for the window of ``video`` starting at ``start_s``: stem, milliseconds, path hash."""
    stem = re.sub(r"[^A-Za-z0-9]+", "_", Path(video).stem).strip("_")[:40] or "video"
    digest = hashlib.blake2b(video.encode(), digest_size=4).hexdigest()
    return f"{stem}-{round(start_s * 1000):07d}-{digest}"


def read_manifest(out: Path) -> dict[tuple[str, float], WindowRecord]:
    """The last record of each window in ``out/manifest.jsonl`` (empty when there is none yet).

    A torn last line (the run was killed mid-write) is skipped; any other bad line raises ValueError
    naming it, since a manifest edited by hand into nonsense should not be silently ignored.
    """
    path = out / MANIFEST
    if not path.is_file():
        return {}
    records: dict[tuple[str, float], WindowRecord] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = WindowRecord.model_validate_json(line)
        except ValueError as exc:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a manifest record ({exc})") from None
        records[record.key] = record
    return records


class ManifestWriter:
    """Appends records as they are decided and rewrites the file sorted when closed."""

    def __init__(self, out: Path, settings: MiningSettings) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self._check_settings(settings)
        self.records = read_manifest(out)
        self._file = (out / MANIFEST).open("a", encoding="utf-8")

    def _check_settings(self, settings: MiningSettings) -> None:
        path = self.out / SETTINGS_FILE
        wanted = settings.model_dump(mode="json")
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            if changed:
                raise ValueError(f"{self.out} was mined with other settings ({', '.join(changed)}); "
                                 "use a new --out folder, or the same settings to resume")  # fmt: skip
        else:
            path.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")

    def add(self, record: WindowRecord) -> None:
        self.records[record.key] = record
        self._file.write(record.model_dump_json() + "\n")
        self._file.flush()

    def close(self) -> list[WindowRecord]:
        """Rewrite the manifest sorted, one line per window; returns those records in that order."""
        self._file.close()
        ordered = [self.records[key] for key in sorted(self.records)]
        partial = self.out / (MANIFEST + ".partial")
        partial.write_text("".join(r.model_dump_json() + "\n" for r in ordered), encoding="utf-8")
        partial.replace(self.out / MANIFEST)
        return ordered

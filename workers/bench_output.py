"""One model's bench outputs on disk: `DIR/NAME/<item id>.png`, `generation.json`, `failures.jsonl`.

- Every PNG is written to a hidden temporary name beside it and renamed into place, so a run killed
  mid-write never leaves a truncated `<id>.png` (only a `.<id>.png.partial`, removed by the next run).
- `generation.json` records, once, what rendered the folder (SPEC, kind, family, steps, guidance, seed,
  size, the source file, library versions). A later run into the same folder must render the same
  way, or it is refused: one folder never mixes the edits of two settings.
- `failures.jsonl`: one `{"item", "error", "time"}` line per item still failing. Rewritten at the end
  of every run to the items that still fail; removed when none do.

Only the driver writes here; renderers return PNG bytes, so no filesystem is shared with them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from workers.bench_tasks import RenderSource

GENERATION = "generation.json"
FAILURES = "failures.jsonl"
PARTIAL = ".partial"


class OutputError(ValueError):
    """The output folder holds renders of other settings, or cannot be used; the message says which."""


@dataclass(frozen=True)
class Failure:
    """An item that did not render: its id, why, and when (ISO 8601, UTC, seconds)."""

    item: str
    error: str
    time: str

    @classmethod
    def now(cls, item: str, error: str) -> Failure:
        return cls(item, error, datetime.now(UTC).isoformat(timespec="seconds"))


def versions() -> dict[str, str]:
    """The installed versions of what shapes the pixels (absent packages are left out)."""
    found = {}
    for package in ("torch", "diffusers", "transformers", "peft", "motionnft"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def write_atomically(path: Path, data: bytes) -> None:
    """`data` into `path` by a temporary file beside it and a rename (readers see all of it or nothing)."""
    partial = path.with_name(f".{path.name}{PARTIAL}")
    partial.write_bytes(data)
    os.replace(partial, path)


class BenchOutput:
    """The folder of one model's renders (`DIR/NAME`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def claim(self, source: RenderSource, seed: int) -> dict[str, Any]:
        """Create the folder (or reuse one rendered the same way) and record what renders it; returns the record.

        Raises:
            OutputError: the folder's generation.json names other settings (which ones differ).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(f".*{PARTIAL}"):  # left by a run killed mid-write
            stale.unlink(missing_ok=True)
        wanted = {"spec": source.spec, **source.settings(), "seed": seed}
        path = self.folder / GENERATION
        if path.exists():
            try:
                held = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise OutputError(f"{path}: not readable ({exc}); remove it or choose another --name") from exc
            differ = [k for k in wanted if k != "spec" and held.get(k) != wanted[k]]
            if differ:
                what = ", ".join(f"{k} {held.get(k)!r} (now {wanted[k]!r})" for k in differ)
                raise OutputError(f"{self.folder} was rendered with other settings: {what}; choose another --name")
            return dict(held)
        record = {**wanted, "versions": versions(), "created": datetime.now(UTC).isoformat(timespec="seconds")}
        write_atomically(path, (json.dumps(record, indent=2) + "\n").encode())
        return record

    def png(self, item_id: str) -> Path:
        return self.folder / f"{item_id}.png"

    def has(self, item_id: str) -> bool:
        """Whether the item's PNG is there (kept, never rendered again)."""
        return self.png(item_id).is_file()

    def write_png(self, item_id: str, data: bytes) -> None:
        write_atomically(self.png(item_id), data)

    def failures(self) -> dict[str, Failure]:
        """The failures recorded by earlier runs, by item (lines that do not parse are skipped)."""
        path = self.folder / FAILURES
        if not path.exists():
            return {}
        found = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                found[str(row["item"])] = Failure(str(row["item"]), str(row["error"]), str(row["time"]))
            except (ValueError, KeyError, TypeError):
                continue
        return found

    def write_failures(self, failures: list[Failure]) -> None:
        """Replace failures.jsonl with `failures`, one JSON line each; no file when there are none."""
        path = self.folder / FAILURES
        if not failures:
            path.unlink(missing_ok=True)
            return
        write_atomically(path, "".join(json.dumps(asdict(f)) + "\n" for f in failures).encode())

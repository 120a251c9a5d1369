"""MotionEdit-Bench items and the models' outputs for them, read from disk.

A bench is any dataset `motionnft.data.formats.load_dataset` reads (the jsonl layout or the parquet
layout, with its category column when present). A model's outputs are `DIR/<item id>.png`, as
`motionnft bench generate` writes them. Images: uint8 (H, W, 3) RGB.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from motionnft.contracts.images import ImageError, decode_image_bytes, encode_image
from motionnft.data.formats import load_dataset
from motionnft.data.records import EditRecord, EditSample, FileReadError, Preprocess, RecordError, read_file_bounded

# Scoring keeps the bench's own resolution (the services resize the pair to each edit's size) after
# the centre crop to square that generation applies, so both see the same framing.
BENCH_PREPROCESS = Preprocess(size=None, center_crop=True)


class BenchError(ValueError):
    """The bench itself cannot be read (a model's bad output is an item failure, not this)."""


@dataclass(frozen=True, eq=False)
class BenchItem:
    """One bench triplet, decoded once and encoded once for the wire.

    Attributes:
        source_b64 / target_b64: the input and target as base64 PNG, after `BENCH_PREPROCESS`.
    """

    id: str
    prompt: str
    category: str | None
    source_b64: str
    target_b64: str
    record: EditRecord

    def load(self) -> EditSample:
        """The decoded triplet again (kept on disk, not in memory: 1,015 pairs at 512 px are 1.6 GB)."""
        return self.record.load(BENCH_PREPROCESS)


class LazySamples(Mapping[str, EditSample]):
    """Item id -> its decoded triplet, decoded when asked (the last few kept), for the HTML page."""

    def __init__(self, items: Sequence[BenchItem]) -> None:
        self._items = {item.id: item for item in items}
        self._load = functools.lru_cache(maxsize=16)(lambda item_id: self._items[item_id].load())

    def __getitem__(self, item_id: str) -> EditSample:
        if item_id not in self._items:
            raise KeyError(item_id)
        return self._load(item_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class ModelOutput:
    """A model's output for one item: `edit_b64` and its content hash, or why there is none.

    `status` is "found", "missing" (no file) or "failed" (a file that is not a usable image).
    """

    status: str
    edit_b64: str | None = None
    sha256: str | None = None
    error: str | None = None


def file_name_problem(item_id: str) -> str | None:
    """Why `item_id` cannot name an output file (`<id>.png` in a model's folder), or None if it can."""
    if not item_id or item_id.startswith(".") or any(c in item_id for c in "/\\\0"):
        return f"item id {item_id!r} cannot name an output file"
    return None


def load_bench(path: Path) -> list[BenchItem]:
    """Every item of the bench at `path`, in file order.

    Raises:
        BenchError: the bench cannot be read, an item's images cannot be decoded, or ids repeat.
    """
    try:
        records = load_dataset(path)
    except (ValueError, OSError) as exc:
        raise BenchError(f"cannot read the bench {path}: {exc}") from exc
    items, seen = [], set()
    for record in records:
        if record.id in seen:
            raise BenchError(f"{record.origin}: item id {record.id!r} repeats; ids name the output files")
        seen.add(record.id)
        problem = file_name_problem(record.id)
        if problem:
            raise BenchError(f"{record.origin}: {problem}")
        try:
            sample = record.load(BENCH_PREPROCESS)
        except RecordError as exc:
            raise BenchError(str(exc)) from exc
        items.append(BenchItem(sample.id, sample.prompt, sample.category, encode_image(sample.input_image),
                               encode_image(sample.target_image), record))  # fmt: skip
    if not items:
        raise BenchError(f"the bench {path} has no items")
    return items


def read_output(model_dir: Path, item_id: str) -> ModelOutput:
    """The model's edit of `item_id`, checked to decode, as base64 of the file's own bytes."""
    path = model_dir / f"{item_id}.png"
    if not path.exists():
        return ModelOutput("missing")
    try:
        raw = read_file_bounded(path)
        decode_image_bytes(raw)
    except (FileReadError, OSError, ImageError) as exc:
        return ModelOutput("failed", error=f"{path.name}: {exc}")
    return ModelOutput("found", base64.b64encode(raw).decode("ascii"), hashlib.sha256(raw).hexdigest())

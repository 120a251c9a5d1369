"""Reading MotionEdit datasets in the two layouts found in the wild (docs/method.md section 1).

- jsonl (the reference implementation's ``train_metadata.jsonl``): one JSON object per line,
  ``{"prompt": "...", "image": ["input.png", "target.png"]}``, paths relative to the jsonl file;
  optional ``id`` (default ``"{stem}-{line_no}"``), ``category`` and ``flow`` (a ``.npy`` of the true
  flow, written by ``motionnft.data.synth``).
- parquet (the Hugging Face ``MotionEdit-Train`` / ``MotionEdit-Bench`` layout): columns ``prompt``,
  ``input_image``, ``target_image`` and usually ``id`` (default ``"{stem}-{row}"``), optional
  ``category``. An image cell is encoded bytes, HF's image struct ``{"bytes": ..., "path": ...}``, or a
  path string (relative to the parquet file).

Loading reads the manifest only; images are decoded later by ``EditRecord.load``. Parquet datasets
carry the encoded image bytes inside the file, so those bytes are held in memory by the records.
pyarrow is imported only when a parquet file is read.

Only regular files are read: a FIFO or a device named as a dataset (or found in a dataset folder) is
a ``DatasetFormatError``, found by ``stat`` before anything opens it, because opening a FIFO blocks
forever and ``/dev/zero`` never ends. A jsonl manifest is read whole, up to ``MAX_MANIFEST_BYTES``.
"""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

from motionnft.data.records import (
    MAX_MANIFEST_BYTES,
    EditRecord,
    FileReadError,
    ImageRef,
    check_regular_file,
    read_file_bounded,
)

REQUIRED_PARQUET_COLUMNS = ("prompt", "input_image", "target_image")


class DatasetFormatError(ValueError):
    """A manifest is malformed; the message names the file and the line or row (1-based lines)."""


def load_dataset(path: Path) -> list[EditRecord]:
    """Load a ``.jsonl`` file, a ``.parquet`` file, or a directory of parquet files (or of one jsonl).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DatasetFormatError: not a regular file or directory, unknown suffix, an ambiguous or empty
            directory, or a malformed manifest.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset not found: {path}") from None
    except OSError as exc:
        raise DatasetFormatError(f"cannot read dataset {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        if any(path.glob("*.parquet")):
            return load_parquet(path)
        manifests = sorted(path.glob("*.jsonl"))
        if len(manifests) == 1:
            return load_jsonl(manifests[0])
        if manifests:
            names = ", ".join(m.name for m in manifests)
            raise DatasetFormatError(f"{path} holds several jsonl manifests ({names}); name one of them")
        raise DatasetFormatError(f"{path} holds no *.parquet or *.jsonl file")
    if path.suffix == ".jsonl":
        return load_jsonl(path)
    if path.suffix == ".parquet":
        return load_parquet(path)
    _require_regular(path)  # say "a FIFO" rather than "unknown format" when that is what it is
    raise DatasetFormatError(f"{path}: unknown dataset format {path.suffix!r}; expected .jsonl or .parquet")


def load_jsonl(path: Path) -> list[EditRecord]:
    """Records of a jsonl manifest, in file order; blank lines are skipped.

    Raises:
        FileNotFoundError: the file does not exist.
        DatasetFormatError: not a regular file, over ``MAX_MANIFEST_BYTES``, not UTF-8, or a line is not
            valid JSON, not an object, or lacks/mistypes ``prompt`` or ``image`` (the message gives the
            line number).
    """
    path = Path(path)
    try:
        data = read_file_bounded(path, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise FileNotFoundError(f"jsonl manifest not found: {path}") from None
    except OSError as exc:  # FileReadError included: its message names the path
        reason = str(exc) if isinstance(exc, FileReadError) else f"cannot read {path}: {exc.strerror or exc}"
        raise DatasetFormatError(reason) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, exc.start) + 1
        raise DatasetFormatError(f"{path}:{line_no}: not UTF-8 text") from None
    base = path.parent
    records = []
    # newline=None: the universal newlines of a file opened in text mode, as this was read before.
    for line_no, line in enumerate(io.StringIO(text, newline=None), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        records.append(_jsonl_record(row, base, f"{path.stem}-{line_no}", where))
    return records


def _require_regular(path: Path) -> None:
    """Raise DatasetFormatError unless ``path`` is a regular file (any size: parquet shards are large)."""
    try:
        check_regular_file(path, limit=None)
    except FileReadError as exc:
        raise DatasetFormatError(str(exc)) from None


def _jsonl_record(row: Any, base: Path, default_id: str, where: str) -> EditRecord:
    if not isinstance(row, dict):
        raise DatasetFormatError(f"{where}: expected a JSON object, got {type(row).__name__}")
    images = row.get("image")
    if not (isinstance(images, list) and len(images) == 2 and all(isinstance(i, str) for i in images)):
        raise DatasetFormatError(f'{where}: "image" must be a list of two paths [input, target], got {images!r}')
    prompt = _typed(row, "prompt", str, where, required=True)
    flow = _typed(row, "flow", str, where)
    record_id = _typed(row, "id", (str, int), where)
    return EditRecord(
        id=default_id if record_id is None else str(record_id),
        prompt=prompt,
        category=_typed(row, "category", str, where),
        input_ref=base / images[0],
        target_ref=base / images[1],
        flow_ref=None if flow is None else base / flow,
        origin=where,
    )


def _typed(row: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, required: bool = False) -> Any:
    """``row[key]`` checked against ``kind``; None when absent (or null) and not required."""
    value = row.get(key)
    if value is None:
        if required:
            raise DatasetFormatError(f'{where}: missing "{key}"')
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DatasetFormatError(f'{where}: "{key}" has the wrong type ({type(value).__name__})')
    return value


def load_parquet(path_or_dir: Path) -> list[EditRecord]:
    """Records of one parquet file, or of every ``*.parquet`` in a directory (sorted by name).

    Raises:
        FileNotFoundError: the path does not exist.
        DatasetFormatError: no parquet file in the directory, missing columns (named), or a null or
            mistyped cell (file and row named).
        ImportError: pyarrow is not installed.
    """
    path = Path(path_or_dir)
    if not path.exists():
        raise FileNotFoundError(f"parquet dataset not found: {path}")
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise DatasetFormatError(f"{path} holds no *.parquet file")
    records: list[EditRecord] = []
    for file in files:
        records.extend(_parquet_records(file))
    return records


def _parquet_records(file: Path) -> list[EditRecord]:
    # Before pyarrow opens it: a FIFO would block it forever. A regular file is finite, and pyarrow
    # must seek to the footer anyway, so parquet is not size-bounded (its shards hold every image).
    _require_regular(file)
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # an optional dependency: only parquet datasets need it
        raise ImportError("reading parquet datasets needs pyarrow: pip install pyarrow") from exc
    try:
        columns = set(pq.read_schema(file).names)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError family
        raise DatasetFormatError(f"{file}: not a readable parquet file ({exc})") from None
    missing = [c for c in REQUIRED_PARQUET_COLUMNS if c not in columns]
    if missing:
        raise DatasetFormatError(
            f"{file}: missing column(s) {', '.join(missing)}; found {', '.join(sorted(columns)) or 'none'}"
        )
    wanted = [*REQUIRED_PARQUET_COLUMNS, *(c for c in ("id", "category") if c in columns)]
    # Column by column as Python lists: one pass, no pandas, and the image bytes are copied once.
    table = pq.read_table(file, columns=wanted).to_pydict()
    records = []
    for row in range(len(table["prompt"])):
        where = f"{file}#{row}"
        prompt = table["prompt"][row]
        if not isinstance(prompt, str):
            raise DatasetFormatError(f"{where}: prompt must be a string, got {type(prompt).__name__}")
        record_id = table["id"][row] if "id" in table else None
        category = table["category"][row] if "category" in table else None
        records.append(
            EditRecord(
                id=f"{file.stem}-{row}" if record_id is None else str(record_id),
                prompt=prompt,
                category=None if category is None else str(category),
                input_ref=_image_cell(table["input_image"][row], file.parent, f"{where} input_image"),
                target_ref=_image_cell(table["target_image"][row], file.parent, f"{where} target_image"),
                origin=where,
            )
        )
    return records


def _image_cell(cell: Any, base: Path, where: str) -> ImageRef:
    """Encoded bytes, ``{"bytes": ..., "path": ...}`` (HF ``Image`` feature) or a path string -> ImageRef."""
    if isinstance(cell, dict):
        # HF stores the bytes when it embedded the image, else only a path; prefer the bytes.
        cell = cell.get("bytes") if cell.get("bytes") is not None else cell.get("path")
    if isinstance(cell, bytes):
        return cell
    if isinstance(cell, str):
        return base / cell
    raise DatasetFormatError(f"{where}: expected image bytes, an image struct or a path, got {type(cell).__name__}")

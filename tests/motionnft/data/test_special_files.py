"""Only regular files are read, and boundedly: a FIFO or /dev/zero, as an image or as the dataset
itself, is a reported problem, never a hang (a FIFO blocks its reader) or a flood (/dev/zero never ends).

Every test here has a short timeout: before the fix they hung rather than failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from motionnft.contracts.images import encode_image_bytes
from motionnft.data import formats
from motionnft.data.formats import DatasetFormatError, load_dataset
from motionnft.data.records import EditRecord, FileReadError, RecordError, read_file_bounded, read_image
from motionnft.data.validation import validate

DEV_ZERO = Path("/dev/zero")
REPO = Path(__file__).resolve().parents[3]

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "mkfifo") or not DEV_ZERO.exists(), reason="needs FIFOs and /dev/zero"),
    pytest.mark.timeout(60),
]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    return path


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "good.png"
    path.write_bytes(encode_image_bytes(np.full((32, 32, 3), 128, dtype=np.uint8)))
    return path


def test_the_reader_refuses_fifos_devices_and_folders(fifo: Path, tmp_path: Path) -> None:
    with pytest.raises(FileReadError, match=rf"not a regular file \(a FIFO\): {fifo}$"):
        read_file_bounded(fifo)
    with pytest.raises(FileReadError, match=r"not a regular file \(a character device\): /dev/zero$"):
        read_file_bounded(DEV_ZERO)
    with pytest.raises(FileReadError, match=r"\(a directory\)"):
        read_file_bounded(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_file_bounded(tmp_path / "missing.png")


def test_the_reader_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "eleven.bin"
    path.write_bytes(b"0123456789A")
    assert read_file_bounded(path, limit=11) == b"0123456789A"
    with pytest.raises(FileReadError, match=rf"file is 11 bytes, over the limit of 10: {path}"):
        read_file_bounded(path, limit=10)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_the_read_itself_is_bounded_when_the_size_lies() -> None:
    # /proc files are regular but say they are 0 bytes long: only the bounded read catches them.
    with pytest.raises(FileReadError, match="over the limit of 10 bytes: /proc/self/status"):
        read_file_bounded(Path("/proc/self/status"), limit=10)


def test_read_image_names_the_image_and_the_path(fifo: Path) -> None:
    with pytest.raises(RecordError, match=rf"^record 'r' input image: not a regular file \(a FIFO\): {fifo}$"):
        EditRecord("r", "Move it", None, fifo, fifo).load()
    with pytest.raises(RecordError, match=r"^target: not a regular file \(a character device\): /dev/zero$"):
        read_image(DEV_ZERO, what="target")


@pytest.mark.parametrize("decode", [True, False])
def test_validate_reports_special_image_files_by_row_and_path(fifo: Path, png: Path, decode: bool) -> None:
    records = [
        EditRecord("ok", "Move it", None, png, png),
        EditRecord("piped", "Move it", None, png, fifo),
        EditRecord("zeros", "Move it", None, DEV_ZERO, png),
    ]
    assert [str(p) for p in validate(records, decode=decode)] == [
        f"row 1 (piped): target image unreadable: not a regular file (a FIFO): {fifo}",
        "row 2 (zeros): input image unreadable: not a regular file (a character device): /dev/zero",
    ]


def test_special_dataset_paths_are_format_errors(tmp_path: Path) -> None:
    for name in ("data.jsonl", "data.parquet", "data"):
        os.mkfifo(tmp_path / name)
        with pytest.raises(DatasetFormatError, match=rf"not a regular file \(a FIFO\): {tmp_path / name}$"):
            load_dataset(tmp_path / name)
    (tmp_path / "zero.jsonl").symlink_to(DEV_ZERO)  # was "not found"; it is there, but not a file
    with pytest.raises(DatasetFormatError, match=r"not a regular file \(a character device\)"):
        load_dataset(tmp_path / "zero.jsonl")
    with pytest.raises(DatasetFormatError, match=r"not a regular file \(a character device\): /dev/zero$"):
        load_dataset(DEV_ZERO)
    shards = tmp_path / "shards"
    shards.mkdir()
    os.mkfifo(shards / "train-0.parquet")  # found by the folder's glob, then refused before pyarrow opens it
    with pytest.raises(DatasetFormatError, match=r"\(a FIFO\)"):
        load_dataset(shards)


def test_a_manifest_over_its_limit_or_not_utf8_is_a_format_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "set.jsonl"
    manifest.write_bytes(b'{"prompt": "x", "image": ["a.png", "b.png"]}\n{"prompt": "\xff"}\n')
    with pytest.raises(DatasetFormatError, match=rf"^{manifest}:2: not UTF-8 text$"):
        load_dataset(manifest)
    monkeypatch.setattr(formats, "MAX_MANIFEST_BYTES", 10)
    with pytest.raises(DatasetFormatError, match="over the limit of 10"):
        load_dataset(manifest)


def validate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`motionnft data validate ARGS` in a child process; a hang fails the test after 30 s."""
    return subprocess.run(
        [sys.executable, "-m", "motionnft.cli", "data", "validate", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=REPO, timeout=30,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip


@pytest.mark.parametrize("decode", ["--decode", "--no-decode"])
def test_validate_command_reports_fifo_and_dev_zero_images(fifo: Path, png: Path, decode: str) -> None:
    manifest = fifo.parent / "set.jsonl"
    rows = [
        {"prompt": "Move it", "image": [png.name, fifo.name]},
        {"prompt": "Move it", "image": ["/dev/zero", png.name]},
    ]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = validate_cli(str(manifest), decode)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"row 0 (set-1): target image unreadable: not a regular file (a FIFO): {fifo}",
        "row 1 (set-2): input image unreadable: not a regular file (a character device): /dev/zero",
    ]
    assert result.stderr.splitlines() == ["2 problem(s) in 2 of 2 record(s)"]


def test_validate_command_refuses_a_fifo_or_dev_zero_as_the_dataset(tmp_path: Path) -> None:
    pipe = tmp_path / "set.jsonl"
    os.mkfifo(pipe)
    for path, kind in ((pipe, "a FIFO"), (DEV_ZERO, "a character device")):
        result = validate_cli(str(path))
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [f"error: not a regular file ({kind}): {path}"]

"""Writing synthetic pairs as a MotionEdit jsonl dataset, reading their true flow back, and splitting.

Layout written by :func:`write_dataset` (``out_dir`` is the dataset root)::

    out_dir/images/{id}_input.png     uint8 RGB (H, W, 3), PNG (lossless: the flow stays exact)
    out_dir/images/{id}_target.png
    out_dir/flows/{id}.npy            float32 (2, H, W), pixels, input -> target (channel 0 = x, 1 = y)
    out_dir/{manifest}                one line per pair: the reference jsonl keys ("prompt", "image")
                                      plus "id", "category" and "flow"; paths relative to out_dir

Several manifests (``train.jsonl``, ``eval.jsonl``) can share one ``images/`` and ``flows/`` folder.
The flow is at the stored image size: preprocessing that crops or resizes (``Preprocess``) does not
carry over to it, so load synthetic data with ``AS_IS`` (or ``size`` equal to the stored size).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from PIL import Image

from motionnft.data.records import EditRecord, read_file_bounded
from motionnft.progress import StepProgress

MAX_FLOW_FILE_BYTES = 2**30  # a float32 (2, 8192, 8192) flow is 512 MiB


class Categorised(Protocol):
    """Anything with an ``id`` and a ``category`` (an EditRecord, a SynthPair)."""

    @property
    def id(self) -> str: ...

    @property
    def category(self) -> str | None: ...


Item = TypeVar("Item", bound=Categorised)


class PairToWrite(Categorised, Protocol):
    """What :func:`write_dataset` writes: a :class:`motionnft.data.synth.SynthPair`, or anything shaped like one.

    A protocol, so this module needs nothing from the generator (which imports this one).
    """

    @property
    def prompt(self) -> str: ...

    @property
    def input_image(self) -> np.ndarray: ...

    @property
    def target_image(self) -> np.ndarray: ...

    @property
    def flow(self) -> np.ndarray: ...


def write_dataset(
    pairs: Sequence[PairToWrite], out_dir: Path, manifest: str = "train.jsonl", *, progress: bool = True
) -> Path:
    """Write images, flows and a jsonl manifest (module docstring); returns the manifest's path.

    The manifest is replaced, images and flows of other ids in the folder are left alone. With
    ``progress``, a :class:`~motionnft.progress.StepProgress` on stderr advances once per pair.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "flows").mkdir(parents=True, exist_ok=True)
    lines = []
    with StepProgress(f"synth {manifest}", total=len(pairs), enabled=progress) as bar:
        for pair in pairs:
            lines.append(_write_pair(pair, out_dir))
            bar.advance()
    path = out_dir / manifest
    # Write then rename, so a reader never sees half a manifest.
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(lines), encoding="utf-8")
    partial.replace(path)
    return path


def _write_pair(pair: PairToWrite, out_dir: Path) -> str:
    """Write one pair's images and flow; returns its manifest line."""
    images = [f"images/{pair.id}_input.png", f"images/{pair.id}_target.png"]
    Image.fromarray(pair.input_image).save(out_dir / images[0])
    Image.fromarray(pair.target_image).save(out_dir / images[1])
    flow = f"flows/{pair.id}.npy"
    np.save(out_dir / flow, pair.flow.astype(np.float32, copy=False))
    row = {"id": pair.id, "prompt": pair.prompt, "category": pair.category, "image": images, "flow": flow}
    return json.dumps(row) + "\n"


def load_true_flow(record_or_path: EditRecord | Path | str) -> np.ndarray:
    """The true flow of a synthetic record (its ``flow_ref``) or of a ``.npy`` path: float32 ``(2, H, W)``.

    Raises:
        ValueError: the record has no flow, or the file does not hold a (2, H, W) array.
        FileNotFoundError: the file is missing.
    """
    if isinstance(record_or_path, EditRecord):
        if record_or_path.flow_ref is None:
            raise ValueError(f"record {record_or_path.id!r} has no true flow (only synthetic data does)")
        path = record_or_path.flow_ref
    else:
        path = Path(record_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"flow file not found: {path}")
    # The data room's bounded reader (regular files only); never unpickle a data file.
    flow = np.load(io.BytesIO(read_file_bounded(path, MAX_FLOW_FILE_BYTES)), allow_pickle=False)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"{path}: expected a (2, H, W) flow, got shape {flow.shape}")
    return flow.astype(np.float32, copy=False)


def split(records: Sequence[Item], eval_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Split into (train, eval), stratified by category, deterministic in (ids, eval_fraction, seed).

    In each category (None counts as one) the ``round(eval_fraction * count)`` items whose
    ``blake2b(seed:id)`` sorts first go to eval. Ranking by a hash of the id rather than by position
    keeps an item's side stable when the dataset is reordered or grows. Both lists keep input order.

    Raises:
        ValueError: ``eval_fraction`` outside [0, 1).
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    by_category: dict[str | None, list[int]] = {}
    for index, record in enumerate(records):
        by_category.setdefault(record.category, []).append(index)
    chosen: set[int] = set()
    for indices in by_category.values():
        ranked = sorted(indices, key=lambda i: (_rank(seed, records[i].id), i))
        chosen.update(ranked[: int(eval_fraction * len(indices) + 0.5)])
    train = [r for i, r in enumerate(records) if i not in chosen]
    evaluation = [r for i, r in enumerate(records) if i in chosen]
    return train, evaluation


def _rank(seed: int, record_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{record_id}".encode(), digest_size=8).digest()

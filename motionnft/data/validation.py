"""Check a whole dataset before training, so a bad 4,000th sample is found at start, not mid-run.

Every record is checked for: a blank prompt, an id used before, a missing or unreadable image file
(a FIFO, a device or a file over ``MAX_IMAGE_FILE_BYTES`` is unreadable: it is reported, never read),
and (with ``decode=True``) image bytes the project's codec refuses, the same codec the services use,
so what passes here is what the reward services would accept. Decoding costs (one core, measured)
2 ms for a 512x512 JPEG, 7 ms for a 512x512 PNG, 26 ms for a 1280x720 PNG, so the 18,284 images of
MotionEdit-Train take between one and eight minutes; ``decode=False`` checks only that the files exist
and are non-empty, in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from motionnft.contracts.images import ImageLimits
from motionnft.data.records import (
    MAX_IMAGE_FILE_BYTES,
    EditRecord,
    FileReadError,
    ImageRef,
    Preprocess,
    RecordError,
    check_regular_file,
    read_image,
)

DEFAULT_LISTED = 20
"""How many problems a ValidationError message lists before it says "and N more"."""


@dataclass(frozen=True)
class RecordProblem:
    """One thing wrong with one record: its 0-based ``index`` in the list, its ``id``, and what."""

    index: int
    id: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.index} ({self.id}): {self.problem}"


class ValidationError(Exception):
    """A dataset has problems; ``problems`` lists all of them, the message the first few."""

    def __init__(self, problems: Sequence[RecordProblem], total: int, max_listed: int = DEFAULT_LISTED) -> None:
        self.problems = list(problems)
        self.total = total
        rows = len({p.index for p in self.problems})
        lines = [f"{len(self.problems)} problem(s) in {rows} of {total} record(s):"]
        lines += [f"  {p}" for p in self.problems[:max_listed]]
        if len(self.problems) > max_listed:
            lines.append(f"  ... and {len(self.problems) - max_listed} more")
        super().__init__("\n".join(lines))


def validate(
    records: Sequence[EditRecord],
    preprocess: Preprocess | None = None,
    decode: bool = True,
    limits: ImageLimits = ImageLimits(),
) -> list[RecordProblem]:
    """Every problem of every record, in record order (a record may have several).

    Args:
        records: the dataset.
        preprocess: when given (and ``decode``), each pair is also run through it, which catches a
            pair the preprocessing cannot handle; it doubles the cost.
        decode: decode the images with the project's codec (else only check that they exist).
        limits: the codec's size limits (the services' defaults unless told).
    """
    problems: list[RecordProblem] = []
    first_index: dict[str, int] = {}
    for index, record in enumerate(records):

        def report(problem: str, index: int = index, record: EditRecord = record) -> None:
            problems.append(RecordProblem(index, record.id, problem))

        if not record.prompt.strip():
            report("blank prompt")
        if record.id in first_index:
            report(f"duplicate id (first used by row {first_index[record.id]})")
        else:
            first_index[record.id] = index
        pixels = {}
        for which, ref in (("input", record.input_ref), ("target", record.target_ref)):
            image, problem = _check_image(ref, decode, limits)
            if problem is not None:
                report(f"{which} image {problem}")
            if image is not None:
                pixels[which] = image
        if record.flow_ref is not None and not record.flow_ref.is_file():
            report(f"flow file not found: {record.flow_ref}")
        if preprocess is not None and len(pixels) == 2:
            try:
                preprocess.apply_pair(pixels["input"], pixels["target"])
            except (ValueError, OSError) as exc:
                report(f"preprocessing failed: {exc}")
    return problems


def require_valid(
    records: Sequence[EditRecord],
    preprocess: Preprocess | None = None,
    decode: bool = True,
    max_listed: int = DEFAULT_LISTED,
) -> None:
    """Raise :class:`ValidationError` listing up to ``max_listed`` problems if :func:`validate` finds any."""
    problems = validate(records, preprocess=preprocess, decode=decode)
    if problems:
        raise ValidationError(problems, total=len(records), max_listed=max_listed)


def _check_image(ref: ImageRef, decode: bool, limits: ImageLimits) -> tuple[np.ndarray | None, str | None]:
    """(decoded pixels or None, None if fine else what is wrong, starting with a lower-case word)."""
    if not decode:
        if isinstance(ref, bytes):
            return None, None if ref else "is empty (0 bytes)"
        # Only stat, never open: the same checks read_image makes before it reads, without the read.
        try:
            size = check_regular_file(ref, MAX_IMAGE_FILE_BYTES).st_size
        except FileNotFoundError:
            return None, f"file not found: {ref}"
        except FileReadError as exc:
            return None, f"unreadable: {exc}"
        except OSError as exc:
            return None, f"unreadable: cannot stat {ref}: {exc.strerror or exc}"
        return None, None if size else f"is empty (0 bytes): {ref}"
    try:
        return read_image(ref, limits, what="image"), None
    except RecordError as exc:
        reason = str(exc).removeprefix("image: ")
        return None, reason if reason.startswith("file not found") else f"unreadable: {reason}"

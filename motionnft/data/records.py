"""One MotionEdit triplet, held lazily (`EditRecord`), loaded (`EditSample`), and how it is preprocessed.

Conventions: images are uint8 RGB ``(H, W, 3)`` (the wire convention of ``motionnft.contracts``);
sizes are in pixels. A record names its two images by reference (a file path or the encoded bytes)
so a dataset of ten thousand pairs costs paths and bytes until a sample is actually loaded, and
decoding goes through the project's codec (``motionnft.contracts.images``), so a file is accepted
here exactly when the services would accept the same bytes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import numpy as np
from PIL import Image

from motionnft.contracts.images import ImageError, ImageLimits, decode_image_bytes

ImageRef: TypeAlias = Path | bytes
"""Where an image lives: a file path, or its encoded PNG/JPEG/WebP bytes (parquet datasets)."""

MAX_IMAGE_FILE_BYTES = 64 * 2**20
"""Largest image file read (64 MiB). The codec's limit of 4096x4096 pixels is 48 MiB of raw RGB, and a
PNG or JPEG of it is smaller, so no image the codec accepts is refused for its file size."""

MAX_MANIFEST_BYTES = 256 * 2**20
"""Largest jsonl manifest read (256 MiB); MotionEdit-Train's is about 4 MB."""

BLACK_BAR_LEVEL = 8.0
"""A border row or column whose mean intensity (0-255, all channels) is at most this is a black bar."""


class RecordError(ValueError):
    """An image of a record could not be read or decoded; the message names the record and the image."""


class FileReadError(OSError):
    """A file that is not read: not a regular file (a FIFO, a device, ...) or over the size limit.

    The message names the path. A FIFO would block the reader forever and ``/dev/zero`` would fill
    memory, so both are refused by looking (``stat``), never by trying.
    """


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_regular_file(path: Path, limit: int | None, st: os.stat_result | None = None) -> os.stat_result:
    """``path``'s stat (symlinks followed; or ``st``) if it is a regular file of at most ``limit`` bytes.

    Raises:
        FileNotFoundError: nothing at ``path``.
        FileReadError: not a regular file, or larger than ``limit`` bytes.
    """
    st = os.stat(path) if st is None else st
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise FileReadError(f"not a regular file ({kind}): {path}")
    if limit is not None and st.st_size > limit:
        raise FileReadError(f"file is {st.st_size} bytes, over the limit of {limit}: {path}")
    return st


def read_file_bounded(path: Path, limit: int = MAX_IMAGE_FILE_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them: the data room's one file reader.

    The file is checked with ``stat`` before it is opened, so a FIFO is never opened (opening one
    blocks until a writer comes). It is then opened non-blocking and checked again by descriptor, in
    case the path was swapped in between, and read with a bound in case it grew (or lied about its
    size, as ``/proc`` files do).

    Raises:
        FileNotFoundError: nothing at ``path``.
        FileReadError: not a regular file, or more than ``limit`` bytes.
        OSError: the file cannot be opened or read (permissions, I/O errors).
    """
    check_regular_file(path, limit)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        check_regular_file(path, limit, os.fstat(fd))
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileReadError(f"file is over the limit of {limit} bytes: {path}")
    return data


@dataclass(frozen=True)
class Preprocess:
    """How a triplet's two images are brought to the size the model trains on.

    The reference training used 512x512 after a center crop to square, and cropped black bars off the
    targets (video frames are often letterboxed); that is ``Preprocess(size=512, crop_black_bars=True)``.
    The steps, in order:

    1. ``crop_black_bars``: near-black border rows/columns (mean <= ``BLACK_BAR_LEVEL``) are found on the
       *target* and that same box is cropped from both images when they have the same size, because
       both frames come from one video and the flow reward needs their pixels to stay aligned; images
       of different sizes are each cropped by their own bars.
    2. ``center_crop``: the largest centred square (side = min(H, W); an odd remainder drops the extra
       row/column at the bottom/right).
    3. ``size``: both images resized to ``size x size`` with PIL bicubic (which low-pass filters when
       shrinking, so downscaling does not alias). Without ``center_crop`` the aspect ratio changes.
       ``size=None`` does not resize; if the two images then differ in size, the target is resized to
       the input's (H, W) the same way, because every consumer wants a pixel-aligned pair.

    ``Preprocess(size=None, center_crop=False)`` keeps images exactly as they are (``AS_IS``).
    """

    size: int | None = 512
    center_crop: bool = True
    crop_black_bars: bool = False

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be a positive number of pixels or None, got {self.size}")

    def apply_pair(self, input_image: np.ndarray, target_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``(H0, W0, 3)`` and ``(H1, W1, 3)`` -> both uint8 ``(S, S, 3)`` (or the input's (H, W))."""
        if self.crop_black_bars:
            box = black_bar_box(target_image)
            input_box = box if input_image.shape == target_image.shape else black_bar_box(input_image)
            input_image, target_image = _crop(input_image, input_box), _crop(target_image, box)
        if self.center_crop:
            input_image, target_image = center_square(input_image), center_square(target_image)
        if self.size is not None:
            return resize(input_image, self.size, self.size), resize(target_image, self.size, self.size)
        if target_image.shape != input_image.shape:
            target_image = resize(target_image, input_image.shape[0], input_image.shape[1])
        return input_image, target_image


AS_IS = Preprocess(size=None, center_crop=False)
"""No cropping, no resizing (a target of another size is still resized to the input's)."""


@dataclass(frozen=True, eq=False)
class EditSample:
    """A loaded triplet: ``input_image`` and ``target_image`` uint8 RGB ``(H, W, 3)`` of the same size."""

    id: str
    prompt: str
    category: str | None
    input_image: np.ndarray
    target_image: np.ndarray


@dataclass(frozen=True)
class EditRecord:
    """A triplet by reference: the instruction now, the two images when :meth:`load` is called.

    Attributes:
        id: unique within a dataset.
        prompt: the imperative edit instruction.
        category: one of the six MotionEdit categories, or None where the source does not say.
        input_ref / target_ref: a file path or encoded image bytes (see ``ImageRef``).
        flow_ref: a ``.npy`` file of the true float32 ``(2, H, W)`` flow (synthetic data only).
        origin: where the record was read from (``file:line`` or ``file#row``), for messages.
    """

    id: str
    prompt: str
    category: str | None
    input_ref: ImageRef = field(repr=False)
    target_ref: ImageRef = field(repr=False)
    flow_ref: Path | None = None
    origin: str = ""

    def __repr__(self) -> str:
        # The default repr would print megabytes of image bytes; show what the refs are instead.
        return (
            f"EditRecord(id={self.id!r}, prompt={self.prompt!r}, category={self.category!r}, "
            f"input={describe_ref(self.input_ref)}, target={describe_ref(self.target_ref)}, origin={self.origin!r})"
        )

    def load(self, preprocess: Preprocess = Preprocess(), limits: ImageLimits = ImageLimits()) -> EditSample:
        """Read, decode and preprocess both images.

        Raises:
            RecordError: an image file is missing or unreadable, or its bytes are not an image the
                codec accepts (the message names the record, which image and why).
        """
        input_image = read_image(self.input_ref, limits, f"record {self.id!r} input image")
        target_image = read_image(self.target_ref, limits, f"record {self.id!r} target image")
        input_image, target_image = preprocess.apply_pair(input_image, target_image)
        return EditSample(self.id, self.prompt, self.category, input_image, target_image)


def describe_ref(ref: ImageRef) -> str:
    """A short human description of an image reference: the path, or ``<N bytes>``."""
    return str(ref) if isinstance(ref, Path) else f"<{len(ref)} bytes>"


def read_image(ref: ImageRef, limits: ImageLimits = ImageLimits(), what: str = "image") -> np.ndarray:
    """Decode an image reference to uint8 RGB ``(H, W, 3)`` with the project's codec.

    Raises:
        RecordError: a missing or unreadable file, one that is not a regular file or is over
            ``MAX_IMAGE_FILE_BYTES``, or bytes the codec refuses; the message starts with ``what``.
    """
    if isinstance(ref, Path):
        try:
            raw = read_file_bounded(ref, MAX_IMAGE_FILE_BYTES)
        except FileNotFoundError:
            raise RecordError(f"{what}: file not found: {ref}") from None
        except FileReadError as exc:
            raise RecordError(f"{what}: {exc}") from None
        except OSError as exc:
            raise RecordError(f"{what}: cannot read {ref}: {exc.strerror or exc}") from None
    else:
        raw = ref
    if not raw:
        raise RecordError(f"{what}: empty image ({describe_ref(ref)})")
    try:
        return decode_image_bytes(raw, limits).pixels
    except ImageError as exc:
        raise RecordError(f"{what}: {exc} ({describe_ref(ref)})") from None


def center_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of uint8 ``(H, W, 3)``: ``(S, S, 3)`` with S = min(H, W)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``(H, W, 3)`` -> uint8 ``(height, width, 3)`` with PIL bicubic; a no-op at the same size."""
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def black_bar_box(image: np.ndarray, level: float = BLACK_BAR_LEVEL) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` (bottom/right exclusive) of ``image`` without its black border bars.

    A bar is a run of rows (or columns) from an edge whose mean intensity is at most ``level``; an
    image that is black throughout is left whole (there is nothing to keep otherwise).
    """
    gray = image.astype(np.float32).mean(axis=2)
    rows = np.flatnonzero(gray.mean(axis=1) > level)
    cols = np.flatnonzero(gray.mean(axis=0) > level)
    if rows.size == 0 or cols.size == 0:
        return 0, image.shape[0], 0, image.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = box
    return image[top:bottom, left:right]

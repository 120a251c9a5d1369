"""Decode every image of a request, off the event loop's path, naming each bad one by its place.

All problems are collected before answering, so a client fixes its request in one round trip. The
pixel count of the whole request is checked from the image headers before anything is decoded: the
per-image limit alone let 12 tiny all-zero 4096^2 PNGs (783 KB of body) cost 700 MB to decode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from motionnft.contracts.images import (
    DecodedImage,
    ImageError,
    ImageLimits,
    decode_base64,
    decode_image_bytes,
    image_size,
)
from motionnft.contracts.problems import FieldProblem
from services.serving.problems import MAX_REPORTED_ERRORS, ProblemError


def decode_named(
    images: Sequence[tuple[str, str]],
    limits: ImageLimits,
    *,
    max_request_pixels: int,
    keep_data_urls: bool = False,
    fit: Callable[[DecodedImage], DecodedImage] | None = None,
) -> list[DecodedImage]:
    """(location, base64) pairs -> decoded images in the same order; one 422 naming every bad one.

    `fit` (e.g. shrink to the size the model works at) is applied to each image as soon as it is
    decoded, so a request never holds more than one full-size decoded image beyond what it keeps.
    Blocking (PIL decoding): call it through `asyncio.to_thread`.
    """
    raws: list[bytes | None] = []
    problems: dict[int, FieldProblem] = {}
    pixels = 0
    for i, (loc, data) in enumerate(images):
        try:
            raw = decode_base64(data)
            width, height = image_size(raw, limits)
        except ImageError as exc:
            problems[i] = FieldProblem(loc=loc, msg=str(exc))
            raws.append(None)
            continue
        raws.append(raw)
        pixels += width * height
    if pixels > max_request_pixels:
        msg = f"the request's images hold {pixels} pixels together; at most {max_request_pixels} per request"
        raise limit_problem([FieldProblem(loc="body", msg=msg)])
    # Within the budget, every image whose header was fine is decoded even if another one was bad,
    # so the answer names every bad image (a truncated body shows only when decoding).
    decoded: list[DecodedImage] = []
    for i, ((loc, _), given) in enumerate(zip(images, raws, strict=True)):
        if given is None:
            continue
        try:
            image = decode_image_bytes(given, limits, keep_data_url=keep_data_urls)
        except ImageError as exc:
            problems[i] = FieldProblem(loc=loc, msg=str(exc))
            continue
        if not problems:  # once one image is bad, nothing is kept
            decoded.append(fit(image) if fit is not None else image)
    if problems:
        raise _invalid([problems[i] for i in sorted(problems)])
    return decoded


def _invalid(problems: Sequence[FieldProblem]) -> ProblemError:
    detail = "; ".join(f"{p.loc}: {p.msg}" for p in problems[:3])
    if len(problems) > MAX_REPORTED_ERRORS:
        detail += f" ({len(problems)} bad images; the first {MAX_REPORTED_ERRORS} are listed)"
    return ProblemError(
        422, "invalid-image", "One or more images could not be used", detail, problems[:MAX_REPORTED_ERRORS]
    )


def limit_problem(problems: Sequence[FieldProblem]) -> ProblemError:
    """The 422 for a request outside the service's limits (counts, lengths, unknown names)."""
    return ProblemError(
        422, "limit-exceeded", "Request outside the service's limits", problems[0].msg, problems[:MAX_REPORTED_ERRORS]
    )

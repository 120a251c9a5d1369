"""Decode every image of a request, off the event loop's path, naming each bad one by its place.

All problems are collected before answering, so a client fixes its request in one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

from motionnft.contracts.images import DecodedImage, ImageError, ImageLimits, decode_image
from motionnft.contracts.problems import FieldProblem
from services.serving.problems import ProblemError


def decode_named(
    images: Sequence[tuple[str, str]], limits: ImageLimits, *, keep_data_urls: bool = False
) -> list[DecodedImage]:
    """(location, base64) pairs -> decoded images in the same order; one 422 naming every bad one.

    Blocking (PIL decoding): call it through `asyncio.to_thread`.
    """
    decoded: list[DecodedImage] = []
    problems: list[FieldProblem] = []
    for loc, data in images:
        try:
            decoded.append(decode_image(data, limits, keep_data_url=keep_data_urls))
        except ImageError as exc:
            problems.append(FieldProblem(loc=loc, msg=str(exc)))
    if problems:
        detail = "; ".join(f"{p.loc}: {p.msg}" for p in problems[:3])
        raise ProblemError(422, "invalid-image", "One or more images could not be used", detail, problems)
    return decoded


def limit_problem(problems: Sequence[FieldProblem]) -> ProblemError:
    """The 422 for a request outside the service's limits (counts, lengths, unknown names)."""
    return ProblemError(422, "limit-exceeded", "Request outside the service's limits", problems[0].msg, problems)

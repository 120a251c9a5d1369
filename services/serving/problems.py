"""problem+json everywhere: every error a service returns is an RFC 9457 body naming what and where.

Validation errors keep their location in the body's own terms (`groups[0].edits[3]`), so a caller
can find the bad image without reading server logs. Nothing here returns a 500 for bad input: the
catch-all handler exists only so a bug shows up as a problem body with a request id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from motionnft.contracts.problems import PROBLEM_MEDIA_TYPE, FieldProblem, ProblemDetail, problem_type

log = logging.getLogger(__name__)


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem body."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        errors: Sequence[FieldProblem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.errors = list(errors)
        self.headers = headers or {}


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    *,
    errors: Sequence[FieldProblem] = (),
    instance: str | None = None,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> ProblemResponse:
    """Build the problem+json response itself (also usable from pure ASGI middleware)."""
    body = ProblemDetail(
        type=problem_type(slug),
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        errors=list(errors),
        request_id=request_id,
    )
    return ProblemResponse(body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers)


def format_loc(loc: Sequence[int | str]) -> str:
    """('body', 'groups', 0, 'edits', 3) -> 'groups[0].edits[3]'."""
    text = ""
    for part in loc:
        if part == "body" and not text:
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


MAX_REPORTED_ERRORS = 20


def validation_problem(total: int, errors: Sequence[Any]) -> ProblemError:
    """The 422 for schema errors: the first MAX_REPORTED_ERRORS of `total`, each with its place."""
    problems = [
        FieldProblem(loc=format_loc(e.get("loc", ())), msg=str(e.get("msg", "invalid")))
        for e in errors[:MAX_REPORTED_ERRORS]
    ]
    shown = "; ".join(f"{p.loc}: {p.msg}" for p in problems[:5])
    more = f" ({total} errors; the first {len(problems)} are listed)" if total > len(problems) else ""
    return ProblemError(422, "invalid-request", "Request body does not match the schema", shown + more, problems)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _on_problem(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status, exc.slug, exc.title, exc.detail, errors=exc.errors,
        instance=request.url.path, request_id=_request_id(request), headers=exc.headers,
    )  # fmt: skip


async def _on_validation(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    # A body that is not JSON at all is a malformed request (400); JSON of the wrong shape is 422.
    if any(e.get("type") == "json_invalid" for e in errors):
        problem = ProblemError(400, "malformed-json", "Request body is not valid JSON", str(errors[0].get("msg")))
    else:
        problem = validation_problem(len(errors), errors)
    return await _on_problem(request, problem)


async def _on_http(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(
        exc.status_code, f"http-{exc.status_code}", str(exc.detail), None,
        instance=request.url.path, request_id=_request_id(request), headers=dict(exc.headers or {}),
    )  # fmt: skip


async def _on_unexpected(request: Request, exc: Exception) -> ProblemResponse:
    request_id = _request_id(request)
    log.exception("unhandled error on %s (request %s)", request.url.path, request_id)
    # Starlette sends this response from its outermost middleware, outside RequestContextMiddleware,
    # so the request id header has to be added here or the 500 would be the one answer without it.
    return problem_response(
        500, "internal-error", "Internal server error", "The error was logged with this request id.",
        instance=request.url.path, request_id=request_id,
        headers={"X-Request-ID": request_id} if request_id else None,
    )  # fmt: skip


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error through problem+json."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries declaring problem+json bodies for these statuses."""
    described = {
        400: "Malformed request (body is not JSON).",
        401: "Missing or wrong bearer token.",
        408: "The request body did not arrive within the service's body timeout.",
        413: "Request body over the size limit.",
        422: "Request is well-formed JSON but invalid: wrong types, bad images, limits exceeded.",
        429: "Too many requests in flight; retry after `Retry-After` seconds.",
        502: "The upstream model failed for every item of the request.",
        503: "Not ready, draining, or overloaded; retry after `Retry-After` seconds.",
    }
    return {
        s: {
            "description": described.get(s, "Error."),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}},
        }
        for s in statuses
    }

"""Request bodies: parsed and validated off the event loop, with bounded work and bounded errors.

FastAPI would parse the JSON on the event loop and turn every validation error into a dict, so one
`{"groups": [0, 0, ...]}` of a million items stalled `/healthz` for half a minute and answered a
100 MB error body. Here the body (already received and size-limited by `AdmissionMiddleware`) is:

1. parsed by pydantic-core in a worker thread (malformed JSON: 400);
2. walked once, stopping early, to refuse a body with more than `MAX_JSON_VALUES` values before any
   per-item error is built (422);
3. validated against the route's model, whose lists carry hard `max_length`s that fail fast (422);
4. answered with at most `MAX_REPORTED_ERRORS` field errors plus the total count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pydantic_core
from fastapi import Request
from pydantic import BaseModel, ValidationError

from motionnft.contracts.problems import FieldProblem
from services.serving.problems import ProblemError, validation_problem

M = TypeVar("M", bound=BaseModel)

# A full request (16 groups of 32 edits with source and target) holds under 1,000 JSON values.
MAX_JSON_VALUES = 100_000


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A route dependency that yields the request body as `model`, validated off the event loop."""

    async def parse(request: Request) -> M:
        raw = await request.body()
        return await asyncio.to_thread(validate_body, model, raw)

    return parse


def request_body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads `model` through `json_body` (FastAPI cannot see it)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def validate_body(model: type[M], raw: bytes) -> M:
    """JSON bytes -> `model`; raises ProblemError 400 (not JSON) or 422 (wrong shape). Blocking."""
    try:
        parsed = pydantic_core.from_json(raw)  # also bounds nesting depth (recursion limit)
    except ValueError as exc:
        raise ProblemError(400, "malformed-json", "Request body is not valid JSON", str(exc)) from None
    if count_json_values(parsed, MAX_JSON_VALUES) > MAX_JSON_VALUES:
        msg = f"the body holds more than {MAX_JSON_VALUES} JSON values; split the request"
        raise ProblemError(422, "limit-exceeded", "Request outside the service's limits", msg,
                           [FieldProblem(loc="body", msg=msg)])  # fmt: skip
    try:
        return model.model_validate(parsed)
    except ValidationError as exc:
        raise validation_problem(exc.error_count(), exc.errors(include_url=False, include_input=False)) from None


def count_json_values(value: object, limit: int) -> int:
    """How many values (objects, arrays, scalars) `value` holds, counting no further than limit + 1."""
    count = 0
    stack = [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
            count += len(item)  # keys count too: a million unknown keys is a million errors
        elif isinstance(item, list):
            stack.extend(item)
    return count

"""RFC 9457 problem details: the one error body every MotionNFT service returns.

Both sides import this: services build it, clients parse it back into `ServiceError`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Problem type URIs are relative references: stable identifiers, not pages that must resolve.
PROBLEM_TYPE_BASE = "/problems/"


class FieldProblem(BaseModel):
    """One thing wrong with one place of the request body."""

    loc: str = Field(description="Where in the body, e.g. `groups[0].edits[3]`.")
    msg: str = Field(description="What is wrong there.")


class ProblemDetail(BaseModel):
    """An `application/problem+json` body (RFC 9457) with MotionNFT's extension members."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", description="Problem type URI (relative reference).")
    title: str = Field(description="Short, human-readable summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str | None = Field(default=None, description="Explanation specific to this occurrence.")
    instance: str | None = Field(default=None, description="The request path that failed.")
    errors: list[FieldProblem] = Field(default_factory=list, description="Per-field problems, if any.")
    request_id: str | None = Field(default=None, description="The X-Request-ID of the failed request.")


def problem_type(slug: str) -> str:
    """Problem type URI for a short slug such as `invalid-image`."""
    return f"{PROBLEM_TYPE_BASE}{slug}"


class ServiceError(Exception):
    """A service answered with an error status; `problem` holds its parsed body when it sent one."""

    def __init__(self, status: int, problem: ProblemDetail | None, message: str | None = None) -> None:
        self.status = status
        self.problem = problem
        text = message or (problem.detail or problem.title if problem else f"HTTP {status}")
        super().__init__(f"{status}: {text}")

    @property
    def retryable(self) -> bool:
        """Only overload statuses are worth another try; other 4xx mean the request itself is wrong."""
        return self.status in (429, 503)

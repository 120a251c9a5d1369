"""Typed async clients of the MotionNFT services: `RewardClient` and `JudgeClient`.

Both are thin layers over `ServiceClient` (see `service_client.py` for the retry rules): each call
posts one contract model and returns the parsed response model, or raises a `ServiceError`.
"""

from __future__ import annotations

import uuid

from motionnft.contracts.judge import (
    JUDGE_COMPARE_PATH,
    JUDGE_CURATE_PATH,
    JUDGE_SCORE_PATH,
    CompareRequest,
    CompareResponse,
    CurateRequest,
    CurateResponse,
    JudgeScoreRequest,
    JudgeScoreResponse,
)
from motionnft.contracts.motion import (
    MOTION_SCORE_PATH,
    GroupScores,
    MotionGroup,
    MotionScoreRequest,
    MotionScoreResponse,
)
from motionnft.contracts.service_client import (
    InvalidResponseError,
    RetryPolicy,
    ServiceClient,
    ServiceUnavailableError,
    retry_after_s,
)

__all__ = [
    "InvalidResponseError",
    "JudgeClient",
    "RetryPolicy",
    "RewardClient",
    "ServiceClient",
    "ServiceUnavailableError",
    "retry_after_s",
]


class RewardClient(ServiceClient):
    """Client of the motion reward API (`POST /v1/motion/score`)."""

    async def score(self, request: MotionScoreRequest, request_id: str | None = None) -> MotionScoreResponse:
        """Score every group of `request`; the answer holds one score per edit, in request order.

        Raises:
            InvalidResponseError: the answer's groups or scores do not line up with the request,
                since a misaligned reward would silently train on the wrong edit.
        """
        # Fixed here rather than in _post so that a shape error below can name the id too.
        request_id = request_id or uuid.uuid4().hex
        response = await self._post(MOTION_SCORE_PATH, request, MotionScoreResponse, request_id)
        shape = [len(group.edits) for group in request.groups]
        got = [len(group.scores) for group in response.groups]
        if got != shape:
            raise InvalidResponseError(
                200,
                None,
                f"scores per group {got} do not match edits per group {shape} (request {request_id})",
            )
        return response

    async def score_group(
        self,
        source: str,
        target: str,
        edits: list[str],
        group_id: str | None = None,
        request_id: str | None = None,
    ) -> GroupScores:
        """Score one group's `edits` (base64 images) against the `source` -> `target` motion."""
        group = MotionGroup(id=group_id, source=source, target=target, edits=edits)
        response = await self.score(MotionScoreRequest(groups=[group]), request_id)
        return response.groups[0]


class JudgeClient(ServiceClient):
    """Client of the MLLM judge service (`/v1/judge/score`, `/v1/judge/compare`, `/v1/judge/curate`)."""

    async def score(self, request: JudgeScoreRequest, request_id: str | None = None) -> JudgeScoreResponse:
        """Rate every edit of every group under each requested rubric (items may carry errors)."""
        request_id = request_id or uuid.uuid4().hex
        response = await self._post(JUDGE_SCORE_PATH, request, JudgeScoreResponse, request_id)
        shape = [len(group.edits) for group in request.groups]
        got = [len(group.scores) for group in response.groups]
        if got != shape:
            raise InvalidResponseError(
                200, None, f"scores per group {got} do not match edits per group {shape} (request {request_id})"
            )
        return response

    async def compare(self, request: CompareRequest, request_id: str | None = None) -> CompareResponse:
        """P(a better than b) for every pair, in order."""
        request_id = request_id or uuid.uuid4().hex
        response = await self._post(JUDGE_COMPARE_PATH, request, CompareResponse, request_id)
        if len(response.pairs) != len(request.pairs):
            raise InvalidResponseError(
                200, None, f"{len(response.pairs)} results for {len(request.pairs)} pairs (request {request_id})"
            )
        return response

    async def curate(self, request: CurateRequest, request_id: str | None = None) -> CurateResponse:
        """Curation criteria, category and (when asked) a motion summary for every window, in order."""
        request_id = request_id or uuid.uuid4().hex
        response = await self._post(JUDGE_CURATE_PATH, request, CurateResponse, request_id)
        if len(response.items) != len(request.items):
            raise InvalidResponseError(
                200, None, f"{len(response.items)} results for {len(request.items)} items (request {request_id})"
            )
        return response

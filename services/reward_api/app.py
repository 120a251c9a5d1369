"""The motion reward service: `POST /v1/motion/score` around motionnft.scoring, plus the shared shell."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Depends, FastAPI

from motionnft.contracts.motion import MOTION_SCORE_PATH, MotionScoreRequest, MotionScoreResponse
from services.reward_api.scorer import RewardScorer
from services.reward_api.settings import RewardApiSettings
from services.serving.app import Readiness, build_service_app
from services.serving.auth import require_token
from services.serving.body import json_body, request_body_openapi
from services.serving.metrics import ServiceMetrics
from services.serving.problems import problem_responses

DESCRIPTION = """Motion alignment reward (MotionEdit, docs/method.md section 2): how well the optical flow from the
input image to each edit matches the flow from the input image to the ground-truth target.
Images are base64 PNG, JPEG or WebP. Errors are `application/problem+json` (RFC 9457)."""


def create_app(settings: RewardApiSettings | None = None) -> FastAPI:
    """Build the service; the flow estimator loads in the background after startup (see /readyz)."""
    settings = settings or RewardApiSettings()
    metrics = ServiceMetrics("reward_api")
    readiness = Readiness()
    scorer = RewardScorer(settings, metrics)

    async def load() -> dict[str, Any]:
        await asyncio.to_thread(scorer.load)
        scorer.start()
        return {"flow_backend": scorer.flow_backend, "device": settings.device, "reward_version": scorer.params.version}

    app = build_service_app(
        title="MotionNFT reward API",
        description=DESCRIPTION,
        version="0.1.0",
        settings=settings,
        metrics=metrics,
        readiness=readiness,
        load=load,
        close=scorer.stop,
        request_models=[MotionScoreRequest],
    )
    app.state.scorer = scorer

    @app.post(
        MOTION_SCORE_PATH,
        tags=["motion"],
        summary="Score edits by motion alignment with the target",
        dependencies=[Depends(require_token(settings.auth_token))],
        responses=problem_responses(400, 401, 408, 413, 422, 429, 503),
        openapi_extra=request_body_openapi(MotionScoreRequest),
    )
    async def score(request: MotionScoreRequest = Depends(json_body(MotionScoreRequest))) -> MotionScoreResponse:
        readiness.require_ready()
        return await scorer.score(request)

    return app

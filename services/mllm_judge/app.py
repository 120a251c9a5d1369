"""The MLLM judge service: `POST /v1/judge/score`, `/v1/judge/compare` and `/v1/judge/curate`, plus the
shared shell."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

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
from services.mllm_judge.rubrics import COMPARE, CURATION_RUBRICS, RUBRICS
from services.mllm_judge.scorer import JudgeScorer
from services.mllm_judge.settings import MllmJudgeSettings
from services.serving.app import Readiness, build_service_app
from services.serving.auth import require_token
from services.serving.body import json_body, request_body_openapi
from services.serving.metrics import ServiceMetrics
from services.serving.problems import problem_responses

DESCRIPTION = """A vision-language judge of image edits (MotionEdit, docs/method.md sections 3 and 6): rates each
edit 0-5 under a rubric from the first answer token's distribution, and compares two edits with both
orders averaged; curates video windows for the miner (first and last frame: four yes/no criteria as
P(Yes), the motion category, a one-sentence summary). Images are base64 PNG, JPEG or WebP. Errors
are `application/problem+json`. An item the judge could not answer carries `error` and no number."""


def create_app(settings: MllmJudgeSettings | None = None) -> FastAPI:
    """Build the service; the backend loads in the background after startup (see /readyz)."""
    settings = settings or MllmJudgeSettings()
    metrics = ServiceMetrics("mllm_judge")
    readiness = Readiness()
    scorer = JudgeScorer(settings, metrics)

    async def load() -> dict[str, Any]:
        await scorer.load()
        rubrics = (*RUBRICS.values(), COMPARE, *CURATION_RUBRICS.values())
        details = {**scorer.identity, "rubrics": {r.name: r.version for r in rubrics}}
        if not scorer.backend.is_language_model:
            details["note"] = "similarity backend: SSIM to the target image, NOT a language model"
        return details

    app = build_service_app(
        title="MotionNFT MLLM judge",
        description=DESCRIPTION,
        version="0.1.0",
        settings=settings,
        metrics=metrics,
        readiness=readiness,
        load=load,
        close=scorer.close,
        request_models=[JudgeScoreRequest, CompareRequest, CurateRequest],
    )
    app.state.scorer = scorer
    guarded = {
        "dependencies": [Depends(require_token(settings.auth_token))],
        "responses": problem_responses(400, 401, 408, 413, 422, 429, 502, 503),
        "response_model_exclude_none": True,
    }

    @app.post(JUDGE_SCORE_PATH, tags=["judge"], summary="Rate edits under rubrics",
              openapi_extra=request_body_openapi(JudgeScoreRequest), **guarded)  # type: ignore[arg-type]  # fmt: skip
    async def score(request: JudgeScoreRequest = Depends(json_body(JudgeScoreRequest))) -> JudgeScoreResponse:
        readiness.require_ready()
        return await scorer.score(request)

    @app.post(JUDGE_COMPARE_PATH, tags=["judge"], summary="Which of two edits is better",
              openapi_extra=request_body_openapi(CompareRequest), **guarded)  # type: ignore[arg-type]  # fmt: skip
    async def compare(request: CompareRequest = Depends(json_body(CompareRequest))) -> CompareResponse:
        readiness.require_ready()
        return await scorer.compare(request)

    @app.post(JUDGE_CURATE_PATH, tags=["judge"], summary="Curate video windows from their first and last frame",
              openapi_extra=request_body_openapi(CurateRequest), **guarded)  # type: ignore[arg-type]  # fmt: skip
    async def curate(request: CurateRequest = Depends(json_body(CurateRequest))) -> CurateResponse:
        readiness.require_ready()
        return await scorer.curate(request)

    return app

"""The MLLM judge service: `POST /v1/judge/score` and `/v1/judge/compare`, plus the shared shell."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from motionnft.contracts.judge import (
    JUDGE_COMPARE_PATH,
    JUDGE_SCORE_PATH,
    CompareRequest,
    CompareResponse,
    JudgeScoreRequest,
    JudgeScoreResponse,
)
from services.mllm_judge.rubrics import COMPARE, RUBRICS
from services.mllm_judge.scorer import JudgeScorer
from services.mllm_judge.settings import MllmJudgeSettings
from services.serving.app import Readiness, build_service_app
from services.serving.auth import require_token
from services.serving.metrics import ServiceMetrics
from services.serving.problems import problem_responses

log = logging.getLogger(__name__)

DESCRIPTION = """A vision-language judge of image edits (MotionEdit, METHOD.md sections 3 and 6): rates each
edit 0-5 under a rubric from the first answer token's distribution, and compares two edits with both
orders averaged. Images are base64 PNG, JPEG or WebP. Errors are `application/problem+json`.
An item the judge could not answer carries `error` and no number."""


def create_app(settings: MllmJudgeSettings | None = None) -> FastAPI:
    """Build the service; the backend loads in the background after startup (see /readyz)."""
    settings = settings or MllmJudgeSettings()
    metrics = ServiceMetrics("mllm_judge")
    readiness = Readiness()
    scorer = JudgeScorer(settings, metrics)

    async def load() -> None:
        try:
            await scorer.load()
        except Exception as exc:  # a bad setting, missing weights, unreachable upstream: say so on /readyz
            log.exception("judge backend failed to load")
            readiness.error = f"{type(exc).__name__}: {exc}"
            return
        rubrics = {r.name: r.version for r in (*RUBRICS.values(), COMPARE)}
        readiness.details = {**scorer.identity, "rubrics": rubrics}
        if not scorer.backend.is_language_model:
            readiness.details["note"] = "similarity backend: SSIM to the target image, NOT a language model"
        readiness.ready = True

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(load())
        yield
        readiness.draining = True
        await loading
        await scorer.close()

    app = build_service_app(
        title="MotionNFT MLLM judge",
        description=DESCRIPTION,
        version="0.1.0",
        settings=settings,
        metrics=metrics,
        readiness=readiness,
        lifespan=lifespan,
    )
    app.state.scorer = scorer
    app.state.readiness = readiness
    app.state.settings = settings
    guarded = {
        "dependencies": [Depends(require_token(settings.auth_token))],
        "responses": problem_responses(400, 401, 413, 422, 429, 502, 503),
        "response_model_exclude_none": True,
    }

    @app.post(JUDGE_SCORE_PATH, tags=["judge"], summary="Rate edits under rubrics", **guarded)  # type: ignore[arg-type]
    async def score(request: JudgeScoreRequest) -> JudgeScoreResponse:
        readiness.require_ready()
        return await scorer.score(request)

    @app.post(JUDGE_COMPARE_PATH, tags=["judge"], summary="Which of two edits is better", **guarded)  # type: ignore[arg-type]
    async def compare(request: CompareRequest) -> CompareResponse:
        readiness.require_ready()
        return await scorer.compare(request)

    return app

"""The shell every service shares: probes, metrics, middleware, problem+json, OpenAPI declarations.

A service builds its FastAPI app with `build_service_app` and adds its own /v1 routes; everything
else (auth, limits, error bodies, metrics, request ids, readiness, draining) comes from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from motionnft.contracts.problems import ProblemDetail
from services.serving.metrics import MetricsMiddleware, ServiceMetrics
from services.serving.middleware import AdmissionMiddleware, RequestContextMiddleware
from services.serving.problems import ProblemError, install_problem_handlers, problem_responses
from services.serving.settings import ServingSettings

log = logging.getLogger(__name__)


@dataclass
class Readiness:
    """What /readyz reports: ready once the model is loaded and warmed up; not ready while draining."""

    ready: bool = False
    draining: bool = False
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def require_ready(self) -> None:
        """Raise a 503 problem unless the service can take work now."""
        if self.draining:
            raise ProblemError(503, "draining", "Service is shutting down", headers={"Retry-After": "1"})
        if not self.ready:
            detail = f"Startup failed: {self.error}" if self.error else "The model is still loading."
            raise ProblemError(503, "not-ready", "Service is not ready", detail, headers={"Retry-After": "1"})


def build_service_app(
    *,
    title: str,
    description: str,
    version: str,
    settings: ServingSettings,
    metrics: ServiceMetrics,
    readiness: Readiness,
    load: Callable[[], Awaitable[dict[str, Any]]],
    close: Callable[[], Awaitable[None]],
    request_models: Sequence[type[BaseModel]] = (),
) -> FastAPI:
    """A FastAPI app with the shared routes, middleware, error handling and lifecycle in place.

    `load` (the model, warm-up) runs in the background once the server is up, so /healthz answers
    at once and /readyz turns 200 when it returns (its dict is shown there), or reports its error.
    At shutdown the service drains (new work gets 503), waits for `load`, then awaits `close`.
    `request_models` are the bodies its routes read through `services.serving.body.json_body`;
    they are declared in the OpenAPI schema, which cannot see them otherwise.
    """
    lifespan = _lifespan(readiness, load, close)
    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan)
    app.state.readiness, app.state.settings = readiness, settings  # for runners and tests
    install_problem_handlers(app)
    _add_probe_routes(app, readiness, metrics)
    _add_middleware(app, settings, metrics, readiness)
    _declare_schemas(app, [ProblemDetail, *request_models])
    return app


def _lifespan(
    readiness: Readiness,
    load: Callable[[], Awaitable[dict[str, Any]]],
    close: Callable[[], Awaitable[None]],
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: `load` in the background at startup; drain, wait for it, `close` at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_load(load, readiness))
        yield
        readiness.draining = True
        await loading
        await close()

    return lifespan


def _add_probe_routes(app: FastAPI, readiness: Readiness, metrics: ServiceMetrics) -> None:
    """GET /healthz (liveness), /readyz (readiness, 503 until ready or while draining) and /metrics."""

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["ops"], summary="Readiness: model loaded and warmed up", responses=problem_responses(503))
    async def readyz() -> dict[str, Any]:
        readiness.require_ready()
        return {"status": "ready", **readiness.details}

    # Declared as text/plain: the Prometheus exposition format, not JSON.
    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics_endpoint() -> Response:
        return metrics.render()


def _add_middleware(app: FastAPI, settings: ServingSettings, metrics: ServiceMetrics, readiness: Readiness) -> None:
    """The middleware stack; outermost first: request context, metrics, admission (auth, limits, draining)."""
    metrics.in_flight_limit.set(settings.max_in_flight)  # the admission limit, beside its level for alerts
    # add_middleware wraps: the last added runs first (outermost).
    app.add_middleware(
        AdmissionMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_in_flight=settings.max_in_flight,
        retry_after_s=settings.retry_after_s,
        body_timeout_s=settings.body_timeout_s,
        token=settings.auth_token,
        is_draining=lambda: readiness.draining,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics, router=app.router)
    app.add_middleware(RequestContextMiddleware)


async def _load(load: Callable[[], Awaitable[dict[str, Any]]], readiness: Readiness) -> None:
    try:
        details = await load()
    except Exception as exc:  # a bad setting, missing weights, an unreachable upstream: say so on /readyz
        log.exception("the service failed to load its model")
        readiness.error = f"{type(exc).__name__}: {exc}"
        return
    readiness.details = details
    readiness.ready = True


def _declare_schemas(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Put these models (and what they reference) into components/schemas, for `$ref`s to them."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

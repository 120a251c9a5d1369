"""Prometheus metrics shared by every service, one registry per app (tests build many apps).

Route labels use the matched route template (`/v1/motion/score`), never the raw path, so a scanner
hitting random URLs cannot blow up label cardinality: unmatched paths are labelled `<unmatched>`.
"""

from __future__ import annotations

import time

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match, Router

from services.serving.middleware import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """The request-level metrics every service exposes, plus a registry for its own."""

    def __init__(self, namespace: str) -> None:
        self.registry = CollectorRegistry()
        self.namespace = namespace
        self.requests = Counter(
            "requests", "HTTP requests by route, method and status", ["route", "method", "status"],
            namespace=namespace, registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "errors", "HTTP responses with status >= 400 by route and status", ["route", "status"],
            namespace=namespace, registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "request_duration_seconds", "Request latency in seconds by route", ["route"],
            buckets=LATENCY_BUCKETS, namespace=namespace, registry=self.registry,
        )  # fmt: skip
        self.in_flight = Gauge(
            "in_flight_requests", "Requests being processed", namespace=namespace, registry=self.registry
        )
        # The limits beside the levels, so an alert can say "near full" without knowing the settings
        # (k8s/base/alerts.yaml divides one by the other). build_service_app sets the in-flight limit,
        # the micro-batcher the queue's (the openai and similarity judges queue nothing: 0, and their
        # "near full" is in-flight against its limit).
        self.in_flight_limit = Gauge(
            "in_flight_limit", "Requests processed at once before more get 429 (max_in_flight)",
            namespace=namespace, registry=self.registry,
        )  # fmt: skip
        self.queued_items = Gauge(
            "queued_items", "Work items waiting in the micro-batch queue", namespace=namespace, registry=self.registry
        )
        self.queue_limit_items = Gauge(
            "queue_limit_items", "Queued work items past which new work gets 503 (max_queue); 0 = no queue",
            namespace=namespace, registry=self.registry,
        )  # fmt: skip
        self.batch_items = Histogram(
            "batch_items", "Work items per micro-batch sent to the model", buckets=BATCH_BUCKETS,
            namespace=namespace, registry=self.registry,
        )  # fmt: skip
        self.batch_requests = Histogram(
            "batch_requests", "Requests coalesced into one micro-batch", buckets=BATCH_BUCKETS,
            namespace=namespace, registry=self.registry,
        )  # fmt: skip

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def route_template(app: Router, scope: Scope) -> str:
    """The path template of the route that matches this request, or `<unmatched>`."""
    for route in app.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "<unmatched>"))
    return "<unmatched>"


class MetricsMiddleware:
    """Counts requests and errors, times them, and tracks in-flight requests."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics, router: Router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_template(self.router, scope)
        status = 500  # what the client sees if the app dies before answering
        started = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(route, str(status)).inc()

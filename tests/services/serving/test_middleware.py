"""The shared service shell on a tiny app: admission (in-flight limit, body limit, draining), request
ids, problem+json for routing errors and for bugs, and bounded metric labels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from services.serving.app import Readiness, build_service_app
from services.serving.metrics import ServiceMetrics
from services.serving.middleware import Message, Receive, RequestContextMiddleware, Scope, Send
from services.serving.problems import format_loc
from services.serving.settings import ServingSettings
from tests.services.harness import assert_problem

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]
MAX_BODY = 1000


@dataclass
class Service:
    app: FastAPI
    readiness: Readiness
    metrics: ServiceMetrics
    release: asyncio.Event = field(default_factory=asyncio.Event)
    entered: int = 0
    echoed: int = 0

    async def wait_entered(self, count: int) -> None:
        for _ in range(500):
            if self.entered >= count:
                return
            await asyncio.sleep(0.002)
        raise TimeoutError(f"{self.entered} of {count} slow requests arrived")


def build(**overrides: object) -> Service:
    """A service with /v1/slow (waits for `release`), /v1/echo (JSON body), /v1/boom and /v1/items/{id}."""
    options = {"max_in_flight": 2, "max_body_bytes": MAX_BODY, "retry_after_s": 3, **overrides}
    settings = ServingSettings(**options)  # type: ignore[arg-type]

    async def load() -> dict[str, object]:
        return {}

    async def close() -> None:
        return None

    readiness = Readiness(ready=True)
    metrics = ServiceMetrics("test")
    app = build_service_app(
        title="test", description="A tiny service.", version="0", settings=settings,
        metrics=metrics, readiness=readiness, load=load, close=close,
    )  # fmt: skip
    service = Service(app, readiness, metrics)

    @app.get("/v1/slow")
    async def slow() -> dict[str, bool]:
        service.entered += 1
        await service.release.wait()
        return {"ok": True}

    @app.post("/v1/echo")
    async def echo(payload: dict[str, str]) -> dict[str, int]:
        service.echoed += 1
        return {"keys": len(payload)}

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/v1/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    return service


@asynccontextmanager
async def client_of(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """In-process client; app exceptions become the 500 the server sends instead of raising here."""
    async with service.app.router.lifespan_context(service.app):
        transport = httpx.ASGITransport(app=service.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=5) as client:
            yield client


def sample(service: Service, name: str, **labels: str) -> float:
    return service.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_in_flight_limit_sheds_guarded_requests_but_not_probes() -> None:
    service = build()
    async with client_of(service) as client:
        held = [asyncio.create_task(client.get("/v1/slow")) for _ in range(2)]
        await service.wait_entered(2)
        shed = await client.get("/v1/slow")
        body = assert_problem(shed, 429)
        assert shed.headers["retry-after"] == "3"
        assert body["type"] == "/problems/overloaded" and body["instance"] == "/v1/slow"
        assert_problem(await client.post("/v1/echo", json={"a": "b"}), 429)  # every /v1 route is guarded
        assert service.echoed == 0
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert sample(service, "test_in_flight_requests") == 2
        service.release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        # The slots are given back: work is admitted again.
        assert (await client.get("/v1/slow")).status_code == 200
        assert (await client.post("/v1/echo", json={"a": "b"})).json() == {"keys": 1}
    assert sample(service, "test_errors_total", route="/v1/slow", status="429") == 1
    assert sample(service, "test_in_flight_requests") == 0


async def test_body_over_the_limit_with_content_length() -> None:
    service = build()
    async with client_of(service) as client:
        too_big = {"k": "x" * MAX_BODY}
        body = assert_problem(await client.post("/v1/echo", json=too_big), 413)
        assert str(MAX_BODY) in body["detail"]
        exactly = {"k": "x" * (MAX_BODY - len('{"k":""}'))}
        assert (await client.post("/v1/echo", json=exactly)).status_code == 200  # the limit itself is allowed
    assert service.echoed == 1


async def test_body_over_the_limit_when_streamed_without_content_length() -> None:
    service = build()
    chunks_sent = 0

    async def stream(chunks: int) -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        yield b'{"k": "'
        for _ in range(chunks):
            chunks_sent += 1
            yield b"x" * 100
        yield b'"}'

    async with client_of(service) as client:
        big = client.build_request("POST", "/v1/echo", content=stream(50), headers={"content-type": "application/json"})
        assert "content-length" not in big.headers
        assert_problem(await client.send(big), 413)
        assert chunks_sent < 50  # refused while streaming, not after buffering everything
        small = await client.post("/v1/echo", content=stream(5), headers={"content-type": "application/json"})
        assert small.status_code == 200, small.text
    assert service.echoed == 1


async def test_draining_refuses_new_work_but_probes_answer() -> None:
    service = build()
    async with client_of(service) as client:
        service.readiness.draining = True
        refused = await client.get("/v1/slow")
        assert assert_problem(refused, 503)["type"] == "/problems/draining"
        assert refused.headers["retry-after"] == "3"
        assert_problem(await client.get("/readyz"), 503)
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    assert service.entered == 0


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("body", "groups", 0, "edits", 3), "groups[0].edits[3]"),
        (("body", "groups", 0, "source"), "groups[0].source"),
        (("body", "groups"), "groups"),
        (("body",), "body"),
        ((), "body"),
        (("body", 0), "[0]"),
        (("body", "groups", 0, "body"), "groups[0].body"),  # a field named body is kept
        (("query", "limit"), "query.limit"),
        (("path", "item_id"), "path.item_id"),
        (("header", "x-token"), "header.x-token"),
        (("body", "a", "b", 1, 2), "a.b[1][2]"),
    ],
)
def test_format_loc(loc: Sequence[int | str], expected: str) -> None:
    assert format_loc(loc) == expected


@pytest.mark.parametrize(
    ("given", "echoed"),
    [
        ("abc-123", True),
        ("trace:0af7651916cd43dd.8448eb211c80319c_01", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("semi;colon", False),
        ("", False),
        ("ünïcode", False),
    ],
)
async def test_request_id_is_echoed_only_when_safe(given: str, echoed: bool) -> None:
    service = build()
    async with client_of(service) as client:
        response = await client.get("/healthz", headers=[(b"X-Request-ID", given.encode())])
    request_id = response.headers["x-request-id"]
    if echoed:
        assert request_id == given
    else:
        assert request_id != given and len(request_id) == 32 and request_id.isalnum()


@pytest.mark.parametrize("given", [b"abc\n", b"abc\r\nx-injected: 1", b"abc\x00"])
async def test_request_id_with_control_characters_is_replaced(given: bytes) -> None:
    """Straight through the ASGI interface, since HTTP clients refuse to send such headers at all."""
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/healthz",
        "headers": [(b"x-request-id", given)],
    }
    await RequestContextMiddleware(app)(scope, receive, send)
    headers = dict(sent[0]["headers"])
    assert headers[b"x-request-id"] != given
    assert headers[b"x-request-id"].isalnum()
    assert scope["state"]["request_id"] == headers[b"x-request-id"].decode()


async def test_routing_errors_are_problems() -> None:
    service = build()
    async with client_of(service) as client:
        assert_problem(await client.get("/no/such/path"), 404)
        assert_problem(await client.get("/v1/no/such/path"), 404)  # guarded, still a problem
        wrong_method = await client.post("/healthz")
        assert_problem(wrong_method, 405)
        assert wrong_method.headers["allow"] == "GET"
        assert_problem(await client.get("/v1/items/not-a-number"), 422, "path.item_id")
        assert_problem(await client.post("/v1/echo", content=b"{", headers={"content-type": "application/json"}), 400)


async def test_an_exception_in_a_route_is_a_500_problem_with_the_request_id() -> None:
    service = build()
    async with client_of(service) as client:
        response = await client.get("/v1/boom", headers={"X-Request-ID": "bug-42"})
        body = assert_problem(response, 500)
        assert body["request_id"] == "bug-42" and body["type"] == "/problems/internal-error"
        assert "a bug" not in response.text  # internals stay in the log
        generated = await client.get("/v1/boom")
        assert_problem(generated, 500)
        # The in-flight slot was given back despite the exception.
        for _ in range(3):
            assert (await client.get("/v1/items/1")).status_code == 200
    assert sample(service, "test_errors_total", route="/v1/boom", status="500") == 2
    assert sample(service, "test_in_flight_requests") == 0


async def test_metric_route_labels_are_templates_and_unmatched_paths_share_one_label() -> None:
    service = build()
    async with client_of(service) as client:
        for i in range(20):
            await client.get(f"/random/{i}/path-{i}")
            await client.get(f"/v1/items/{i}")
        await client.delete("/v1/items/1")  # a path that matches, but not the method
        text = (await client.get("/metrics")).text
    assert sample(service, "test_requests_total", route="<unmatched>", method="GET", status="404") == 20
    assert sample(service, "test_requests_total", route="/v1/items/{item_id}", method="GET", status="200") == 20
    assert sample(service, "test_requests_total", route="<unmatched>", method="DELETE", status="405") == 1
    assert "/random/" not in text and 'route="/v1/items/1"' not in text
    routes = {line.split('route="')[1].split('"')[0] for line in text.splitlines() if 'route="' in line}
    assert routes <= {"<unmatched>", "/v1/items/{item_id}", "/metrics"}, routes

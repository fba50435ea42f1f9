"""The assembled middleware stack: every layer's effect, in the documented order."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from nexus.http.request_id import RequestIdMiddleware
from nexus.http.settings import HttpSettings
from nexus.http.stack import build_middleware_stack
from nexus.http.types import ASGIApp, Message

Connect = Callable[..., httpx.AsyncClient]
ORIGIN = "https://app.example.com"


def _stack(app: FastAPI, **section: Any) -> ASGIApp:
    return build_middleware_stack(app, HttpSettings.model_validate(section), debug=False)


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "nexus.access"]


async def test_default_stack_applies_every_default_layer(
    app: FastAPI, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """Defaults: request id, access log, security headers, rate limit and gzip; no CORS."""
    with caplog.at_level(logging.INFO, logger="nexus.access"):
        async with connect(_stack(app)) as client:
            response = await client.get(
                "/large", headers={"Origin": ORIGIN, "Accept-Encoding": "gzip"}
            )
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["ratelimit-limit"] == "100"
    assert response.headers["content-encoding"] == "gzip"
    assert "access-control-allow-origin" not in response.headers
    [line] = _access_lines(caplog)
    assert line["request_id"] == request_id
    assert line["status"] == 200


async def test_refusals_carry_id_security_and_cors_headers(app: FastAPI, connect: Connect) -> None:
    """A 429 and a 413 are readable cross-origin and carry the request id and security headers."""
    stack = _stack(
        app,
        cors={"allow_origins": [ORIGIN]},
        rate_limit={"rate": 0.001, "burst": 1},
        body_limit={"max_bytes": 10},
    )
    async with connect(stack) as client:
        await client.get("/hello")
        limited = await client.get("/hello", headers={"Origin": ORIGIN})
        too_large = await client.post("/upload", content=b"x" * 11, headers={"Origin": ORIGIN})
    for response, status in ((limited, 429), (too_large, 413)):
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["x-frame-options"] == "DENY"
        assert "x-request-id" in response.headers
    assert limited.headers["retry-after"] == "1000"


async def test_preflights_are_not_rate_limited(app: FastAPI, connect: Connect) -> None:
    """CORS answers preflights before the rate limiter, so they spend no tokens."""
    stack = _stack(app, cors={"allow_origins": [ORIGIN]}, rate_limit={"rate": 0.001, "burst": 1})
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    async with connect(stack) as client:
        statuses = [
            (await client.options("/items", headers=preflight)).status_code for _ in range(3)
        ]
        first_real = await client.get("/hello")
    assert statuses == [204, 204, 204]
    assert first_real.status_code == 200


async def test_rejected_host_is_logged_with_a_request_id(
    app: FastAPI, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """A forged Host gets a 400 problem that still has an id, security headers and a log line."""
    stack = _stack(app, trusted_hosts=["api.example.com"])
    with caplog.at_level(logging.INFO, logger="nexus.access"):
        async with connect(stack) as client:
            response = await client.get("/hello", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert response.headers["x-content-type-options"] == "nosniff"
    [line] = _access_lines(caplog)
    assert line["status"] == 400
    assert line["request_id"] == response.headers["x-request-id"]


async def test_trusted_proxy_client_is_what_later_layers_see(
    app: FastAPI, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """The forwarded client address reaches the access log and the HSTS decision."""
    stack = _stack(app, trusted_proxies=["10.0.0.0/8"])
    headers = {"X-Forwarded-For": "192.0.2.44", "X-Forwarded-Proto": "https"}
    with caplog.at_level(logging.INFO, logger="nexus.access"):
        async with connect(stack, client=("10.1.2.3", 5000)) as client:
            response = await client.get("/hello", headers=headers)
    assert "strict-transport-security" in response.headers
    assert _access_lines(caplog)[0]["client"] == "192.0.2.44"


async def test_server_error_through_the_stack(app: FastAPI, connect: Connect) -> None:
    """A crash is a 500 problem whose request_id matches the X-Request-ID header."""
    async with connect(_stack(app)) as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert response.headers["x-frame-options"] == "DENY"


def test_disabled_layers_are_not_in_the_stack(app: FastAPI) -> None:
    """With every optional layer off, only the request id layer wraps the app."""
    stack = _stack(
        app,
        access_log={"enabled": False},
        security_headers={"enabled": False},
        body_limit={"enabled": False},
        rate_limit={"enabled": False},
        gzip={"enabled": False},
    )
    assert isinstance(stack, RequestIdMiddleware)
    assert stack.app is app


async def test_lifespan_passes_through_the_stack() -> None:
    """Startup and shutdown reach the app through every layer."""
    events: list[str] = []

    async def lifespan(app: FastAPI) -> Any:
        events.append("startup")
        yield
        events.append("shutdown")

    inner = FastAPI(lifespan=lifespan)
    stack = build_middleware_stack(
        inner,
        HttpSettings.model_validate({"trusted_proxies": ["10.0.0.1"], "trusted_hosts": ["a.b"]}),
        debug=False,
    )
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[Message] = []

    async def receive() -> Message:
        return next(incoming)

    async def send(message: Message) -> None:
        sent.append(message)

    await stack({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert events == ["startup", "shutdown"]
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_the_stack_writes_each_header_once_and_keeps_the_apps_own(connect: Connect) -> None:
    """Through the whole stack (one shared header writer) every header appears exactly once,
    and a header the app set itself wins over the security default."""
    from fastapi import Response

    app = FastAPI()

    @app.get("/embed")
    async def embed() -> Response:
        return Response("ok", headers={"X-Frame-Options": "SAMEORIGIN"})

    async with connect(_stack(app)) as client:
        response = await client.get("/embed", headers={"X-Request-ID": "req-1"})
    names = [name for name, _ in response.headers.raw]
    assert len(names) == len(set(names)), names
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["ratelimit-remaining"] == "99"
    assert response.headers["x-request-id"] == "req-1"


async def test_layers_without_a_request_id_layer_add_their_headers_themselves(
    app: FastAPI, connect: Connect
) -> None:
    """The rate limit and security headers still answer with their headers when used alone."""
    from nexus.http.rate_limit import MemoryRateLimitStore, RateLimitMiddleware
    from nexus.http.security_headers import SecurityHeadersMiddleware

    alone = SecurityHeadersMiddleware(
        RateLimitMiddleware(app, rate=1.0, burst=5, store=MemoryRateLimitStore())
    )
    async with connect(alone) as client:
        response = await client.get("/hello")
    assert response.headers["ratelimit-remaining"] == "4"
    assert response.headers["x-frame-options"] == "DENY"
    assert "x-request-id" not in response.headers

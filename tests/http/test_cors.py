"""CORS: listed origins may read responses; everyone else gets no CORS headers at all."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI, Response

from nexus.http.cors import CORSMiddleware

Connect = Callable[..., httpx.AsyncClient]
APP_ORIGIN = "https://app.example.com"


def _preflight(origin: str, method: str = "PUT", headers: str = "") -> dict[str, str]:
    request = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request["Access-Control-Request-Headers"] = headers
    return request


async def test_listed_origin_may_read_the_response(app: FastAPI, connect: Connect) -> None:
    """A listed origin gets itself back in Allow-Origin, the exposed headers and Vary: Origin."""
    stack = CORSMiddleware(app, allow_origins=[APP_ORIGIN])
    async with connect(stack) as client:
        response = await client.get("/hello", headers={"Origin": APP_ORIGIN})
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "X-Request-ID" in response.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["vary"] == "Origin"


async def test_unlisted_origin_gets_no_cors_headers(app: FastAPI, connect: Connect) -> None:
    """An unlisted origin is served (same-origin rules then block the page) without CORS headers."""
    stack = CORSMiddleware(app, allow_origins=[APP_ORIGIN])
    async with connect(stack) as client:
        response = await client.get("/hello", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("access-control-")]
    assert response.headers["vary"] == "Origin"


async def test_app_cannot_grant_an_unlisted_origin(connect: Connect) -> None:
    """Allow headers a route sets itself are removed for origins the policy does not list."""
    app = FastAPI()

    @app.get("/leaky")
    async def leaky() -> Response:
        return Response("x", headers={"Access-Control-Allow-Origin": "*", "Vary": "Cookie"})

    stack = CORSMiddleware(app, allow_origins=[APP_ORIGIN])
    async with connect(stack) as client:
        response = await client.get("/leaky", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    assert response.headers["vary"] == "Cookie, Origin"


async def test_requests_without_origin_still_vary_on_it(app: FastAPI, connect: Connect) -> None:
    """Same-origin responses say Vary: Origin so a cache never serves them cross-origin."""
    stack = CORSMiddleware(app, allow_origins=[APP_ORIGIN])
    async with connect(stack) as client:
        response = await client.get("/hello")
    assert response.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in response.headers


async def test_preflight_from_listed_origin_is_answered(app: FastAPI, connect: Connect) -> None:
    """A valid preflight gets 204 with the allowed methods, headers and max age."""
    stack = CORSMiddleware(app, allow_origins=[APP_ORIGIN], allow_credentials=True, max_age=300)
    async with connect(stack) as client:
        response = await client.options(
            "/items", headers=_preflight(APP_ORIGIN, "PUT", "Content-Type, Authorization")
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "PUT" in response.headers["access-control-allow-methods"].split(", ")
    allowed = response.headers["access-control-allow-headers"].split(", ")
    assert {"authorization", "content-type"} <= set(allowed)
    assert response.headers["access-control-max-age"] == "300"
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize(
    ("request_headers", "reason"),
    [
        (_preflight("https://evil.example"), "origin 'https://evil.example' is not allowed"),
        (_preflight(APP_ORIGIN, "TRACE"), "method 'TRACE' is not allowed"),
        (_preflight(APP_ORIGIN, "PUT", "X-Secret"), "header(s) x-secret not allowed"),
    ],
)
async def test_refused_preflight_is_a_403_problem_without_cors_headers(
    app: FastAPI, connect: Connect, request_headers: dict[str, str], reason: str
) -> None:
    """A preflight for an unlisted origin, method or header is refused, saying which."""
    stack = CORSMiddleware(app, allow_origins=[APP_ORIGIN])
    async with connect(stack) as client:
        response = await client.options("/items", headers=request_headers)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"CORS preflight refused: {reason}."
    assert not [name for name in response.headers if name.startswith("access-control-")]


async def test_wildcard_origin_answers_star_without_vary(app: FastAPI, connect: Connect) -> None:
    """With "*" any origin may read, answered with a literal "*" and no Vary."""
    stack = CORSMiddleware(app, allow_origins=["*"])
    async with connect(stack) as client:
        response = await client.get("/hello", headers={"Origin": "https://any.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "vary" not in response.headers


async def test_wildcard_methods_and_headers_name_what_was_asked(
    app: FastAPI, connect: Connect
) -> None:
    """With "*" methods and headers, a preflight is answered with exactly what it requested."""
    stack = CORSMiddleware(
        app, allow_origins=[APP_ORIGIN], allow_methods=["*"], allow_headers=["*"]
    )
    async with connect(stack) as client:
        response = await client.options(
            "/items", headers=_preflight(APP_ORIGIN, "PURGE", "Authorization, X-Trace")
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-methods"] == "PURGE"
    assert response.headers["access-control-allow-headers"] == "authorization, x-trace"


def test_wildcard_with_credentials_is_refused() -> None:
    """ "*" with credentials is rejected at construction rather than reflected."""
    with pytest.raises(ValueError, match="'\\*' cannot be combined with allow_credentials"):
        CORSMiddleware(FastAPI(), allow_origins=["*"], allow_credentials=True)


async def test_plain_options_request_reaches_the_app(app: FastAPI, connect: Connect) -> None:
    """An OPTIONS request that is not a preflight is routed to the app as usual."""
    stack = CORSMiddleware(app, allow_origins=[APP_ORIGIN])
    async with connect(stack) as client:
        response = await client.options("/hello", headers={"Origin": APP_ORIGIN})
    assert response.status_code == 405
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN

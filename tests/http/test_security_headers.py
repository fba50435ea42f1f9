"""Security headers on every response, never overriding the app's own."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html

from nexus.http.security_headers import DEFAULT_CSP, DOCS_CSP, SecurityHeadersMiddleware

Connect = Callable[..., httpx.AsyncClient]


async def test_defaults_are_added_over_http(app: FastAPI, connect: Connect) -> None:
    """nosniff, DENY, no-referrer and the strict CSP are set; HSTS is not, over plain http."""
    async with connect(SecurityHeadersMiddleware(app)) as client:
        response = await client.get("/hello")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == DEFAULT_CSP
    assert "strict-transport-security" not in response.headers


async def test_hsts_is_sent_over_https(app: FastAPI, connect: Connect) -> None:
    """Strict-Transport-Security appears only when the request scheme is https."""
    async with connect(SecurityHeadersMiddleware(app)) as client:
        response = await client.get("https://testserver/hello")
    assert response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"


async def test_error_responses_get_the_headers_too(app: FastAPI, connect: Connect) -> None:
    """A 404 problem carries the security headers as well."""
    async with connect(SecurityHeadersMiddleware(app)) as client:
        response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_headers_the_app_set_are_kept(connect: Connect) -> None:
    """A route's own X-Frame-Options and CSP win over the defaults, without duplicates."""
    app = FastAPI()

    @app.get("/embed")
    async def embed() -> Response:
        return Response(
            "ok",
            headers={"X-Frame-Options": "SAMEORIGIN", "Content-Security-Policy": "img-src *"},
        )

    async with connect(SecurityHeadersMiddleware(app)) as client:
        response = await client.get("/embed")
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers.get_list("content-security-policy") == ["img-src *"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_docs_get_a_csp_that_allows_the_swagger_assets(connect: Connect) -> None:
    """Under /docs the policy allows the CDN the Swagger UI page loads its assets from."""
    app = FastAPI()
    async with connect(SecurityHeadersMiddleware(app)) as client:
        docs = await client.get("/docs")
        redirect = await client.get("/docs/oauth2-redirect")
        api = await client.get("/openapi.json")
    assert docs.headers["content-security-policy"] == DOCS_CSP
    assert redirect.headers["content-security-policy"] == DOCS_CSP
    assert api.headers["content-security-policy"] == DEFAULT_CSP
    page = get_swagger_ui_html(openapi_url="/openapi.json", title="t").body.decode()
    assert "https://cdn.jsdelivr.net/" in page
    assert "https://cdn.jsdelivr.net" in DOCS_CSP


async def test_overrides_match_whole_path_segments(app: FastAPI, connect: Connect) -> None:
    """A /docs override does not apply to /docsearch, and the longest prefix wins."""
    stack = SecurityHeadersMiddleware(
        app,
        csp_overrides={"/admin": "default-src 'self'", "/admin/api/": "default-src 'none'"},
    )
    async with connect(stack) as client:
        page = await client.get("/admin/users")
        api = await client.get("/admin/api/users")
        other = await client.get("/administrator")
    assert page.headers["content-security-policy"] == "default-src 'self'"
    assert api.headers["content-security-policy"] == "default-src 'none'"
    assert other.headers["content-security-policy"] == DEFAULT_CSP


async def test_empty_values_turn_headers_off(app: FastAPI, connect: Connect) -> None:
    """An empty policy, frame option or HSTS value omits that header."""
    stack = SecurityHeadersMiddleware(app, content_security_policy="", frame_options="", hsts="")
    async with connect(stack) as client:
        response = await client.get("https://testserver/hello")
    assert "content-security-policy" not in response.headers
    assert "x-frame-options" not in response.headers
    assert "strict-transport-security" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"

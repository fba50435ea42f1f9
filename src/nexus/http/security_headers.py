"""Security response headers: nosniff, framing, referrer, CSP (per path prefix) and HSTS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from nexus.http.response_headers import add_default_headers, merge_defaults
from nexus.http.types import ASGIApp, Message, RawHeaders, Receive, Scope, Send

DEFAULT_CSP: Final = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
"""For JSON APIs: the browser may load nothing, and nobody may frame the response."""

_JSDELIVR = "https://cdn.jsdelivr.net"
_FASTAPI_FAVICON = "https://fastapi.tiangolo.com"

DOCS_CSP: Final = (
    f"default-src 'none'; script-src 'self' 'unsafe-inline' {_JSDELIVR}; "
    f"style-src 'self' 'unsafe-inline' {_JSDELIVR}; img-src 'self' data: {_FASTAPI_FAVICON}; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""For FastAPI's Swagger UI at ``/docs``: its assets come from jsDelivr, its setup is inline."""

REDOC_CSP: Final = (
    f"default-src 'none'; script-src 'self' 'unsafe-inline' {_JSDELIVR}; "
    "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; "
    f"img-src 'self' data: {_FASTAPI_FAVICON} https://cdn.redoc.ly; "
    "connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'"
)
"""For FastAPI's ReDoc page at ``/redoc`` (jsDelivr script, Google fonts, a blob: worker)."""

DEFAULT_CSP_OVERRIDES: Final[Mapping[str, str]] = {"/docs": DOCS_CSP, "/redoc": REDOC_CSP}

DEFAULT_HSTS: Final = "max-age=63072000; includeSubDomains"


class SecurityHeadersMiddleware:
    """Add security headers to every HTTP response, keeping any the app set itself.

    ``csp_overrides`` maps a path prefix to the Content-Security-Policy for that path and
    everything below it (``/docs`` covers ``/docs/oauth2-redirect``; the longest prefix wins).
    ``hsts`` is sent only over https. An empty string turns a header off.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        content_security_policy: str = DEFAULT_CSP,
        csp_overrides: Mapping[str, str] = DEFAULT_CSP_OVERRIDES,
        frame_options: str = "DENY",
        referrer_policy: str = "no-referrer",
        hsts: str = DEFAULT_HSTS,
    ) -> None:
        self.app = app
        common: RawHeaders = [(b"x-content-type-options", b"nosniff")]
        if frame_options:
            common.append((b"x-frame-options", frame_options.encode("latin-1")))
        if referrer_policy:
            common.append((b"referrer-policy", referrer_policy.encode("latin-1")))
        hsts_header = [(b"strict-transport-security", hsts.encode("latin-1"))] if hsts else []

        def header_sets(csp: str) -> tuple[RawHeaders, RawHeaders]:
            headers = [*common]
            if csp:
                headers.append((b"content-security-policy", csp.encode("latin-1")))
            return headers, [*headers, *hsts_header]

        # (http, https) header lists, computed once; requests only pick one.
        self._default = header_sets(content_security_policy)
        self._names = frozenset(name for name, _ in self._default[1]) | {b"content-security-policy"}
        prefixes = sorted(((p.rstrip("/"), csp) for p, csp in csp_overrides.items()), reverse=True)
        self._overrides = tuple(
            (prefix, prefix + "/", header_sets(csp)) for prefix, csp in prefixes
        )
        # Every path an override covers starts with its prefix: one C-level test rules out
        # the overrides for most requests.
        self._override_prefixes = tuple(prefix for prefix, _ in prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        header_sets = self._default
        path: str = scope["path"]
        if self._override_prefixes and path.startswith(self._override_prefixes):
            for prefix, below, override in self._overrides:
                if path == prefix or path.startswith(below):
                    header_sets = override
                    break
        extra = header_sets[1] if scope["scheme"] == "https" else header_sets[0]
        names = self._names
        if add_default_headers(scope, extra, names):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = merge_defaults(message.get("headers") or (), extra, names)
            await send(message)

        await self.app(scope, receive, send_with_headers)

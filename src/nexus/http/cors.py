"""CORS with an allow-list: cross-origin browsers may read responses only from listed origins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from nexus.http.problems import send_problem
from nexus.http.types import ASGIApp, Message, RawHeaders, Receive, Scope, Send

DEFAULT_ALLOW_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_ALLOW_HEADERS: Final = ("Authorization", "Content-Type", "X-Request-ID")
DEFAULT_EXPOSE_HEADERS: Final = (
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
)

# Browsers send these without asking in a preflight (Fetch "CORS-safelisted request-header").
_SAFELISTED: Final = frozenset({"accept", "accept-language", "content-language", "content-type"})
_VARY_ORIGIN: Final = (b"vary", b"Origin")


class CORSMiddleware:
    """Answer CORS preflights and label responses for the listed origins; deny all others.

    An unlisted origin gets no ``Access-Control-*`` header at all, which is what makes a
    browser refuse to hand the response to the page; its preflight is answered ``403`` with a
    problem body saying what was refused, so the reason shows in the browser's network panel.
    ``"*"`` allows every origin but cannot be combined with credentials: a credentialed
    response must name its origin, and reflecting any origin would let every site read it.
    Every response carries ``Vary: Origin`` (unless the policy is ``"*"``) so caches keep the
    answers for different origins apart.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allow_origins: Sequence[str],
        allow_methods: Sequence[str] = DEFAULT_ALLOW_METHODS,
        allow_headers: Sequence[str] = DEFAULT_ALLOW_HEADERS,
        expose_headers: Sequence[str] = DEFAULT_EXPOSE_HEADERS,
        allow_credentials: bool = False,
        max_age: int = 600,
    ) -> None:
        if allow_credentials and "*" in allow_origins:
            raise ValueError(
                "CORS allow_origins '*' cannot be combined with allow_credentials: list the "
                "origins that may send credentials, for example ['https://app.example.com']."
            )
        self.app = app
        self.is_any_origin = "*" in allow_origins
        self.origins = frozenset(_normalize_origin(origin).encode() for origin in allow_origins)
        self.is_any_method = "*" in allow_methods
        self.methods = frozenset(method.upper() for method in allow_methods)
        self.is_any_header = "*" in allow_headers
        self.headers = frozenset(header.lower() for header in allow_headers) | _SAFELISTED

        credentials: RawHeaders = (
            [(b"access-control-allow-credentials", b"true")] if allow_credentials else []
        )
        self._actual: RawHeaders = [*credentials]
        if expose_headers:
            self._actual.append(
                (b"access-control-expose-headers", ", ".join(expose_headers).encode())
            )
        self._allowed_methods = ", ".join(sorted(self.methods)).encode()
        self._preflight: RawHeaders = [
            *credentials,
            (b"access-control-max-age", str(max_age).encode()),
        ]
        if not self.is_any_origin:
            self._preflight.append(_VARY_ORIGIN)
        self._allowed_headers = ", ".join(sorted(self.headers - {"*"})).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        origin: bytes | None = None
        request_method: bytes | None = None
        request_headers = b""
        is_options = scope["method"] == "OPTIONS"
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif is_options and name == b"access-control-request-method":
                request_method = value
            elif is_options and name == b"access-control-request-headers":
                request_headers = value

        if origin is None:
            if self.is_any_origin:
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, _labelling(send, ()))
            return
        if request_method is not None:
            await self._preflight_response(send, origin, request_method, request_headers)
            return

        if self.is_any_origin:
            extra = [(b"access-control-allow-origin", b"*"), *self._actual]
        elif origin in self.origins:
            extra = [(b"access-control-allow-origin", origin), *self._actual]
        else:
            extra = []
        await self.app(scope, receive, _labelling(send, extra, vary=not self.is_any_origin))

    async def _preflight_response(
        self, send: Send, origin: bytes, method: bytes, requested: bytes
    ) -> None:
        refused: str | None = None
        names = [name.strip().lower() for name in requested.decode("latin-1").split(",")]
        names = [name for name in names if name]
        if not (self.is_any_origin or origin in self.origins):
            refused = f"origin {origin.decode('latin-1')!r} is not allowed"
        elif not (self.is_any_method or method.decode("latin-1").upper() in self.methods):
            refused = f"method {method.decode('latin-1')!r} is not allowed"
        elif not self.is_any_header and (unknown := [n for n in names if n not in self.headers]):
            refused = f"header(s) {', '.join(unknown)} not allowed"
        if refused is not None:
            vary = () if self.is_any_origin else (_VARY_ORIGIN,)
            detail = f"CORS preflight refused: {refused}."
            await send_problem(send, 403, headers=vary, detail=detail)
            return

        allow_origin = b"*" if self.is_any_origin else origin
        # With "*", name what was asked for: a literal "*" means nothing to a credentialed
        # request, and never covers Authorization.
        allow_methods = method if self.is_any_method else self._allowed_methods
        allow_headers = ", ".join(names).encode() if self.is_any_header else self._allowed_headers
        headers: RawHeaders = [
            (b"access-control-allow-origin", allow_origin),
            *self._preflight,
            (b"access-control-allow-methods", allow_methods),
            (b"access-control-allow-headers", allow_headers),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _labelling(send: Send, extra: Sequence[tuple[bytes, bytes]], *, vary: bool = True) -> Send:
    async def send_labelled(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                header
                for header in message.get("headers") or ()
                if not header[0].startswith(b"access-control-allow-")
            ]
            if vary:
                _add_vary_origin(headers)
            headers.extend(extra)
            message["headers"] = headers
        await send(message)

    return send_labelled


def _add_vary_origin(headers: RawHeaders) -> None:
    for index, (name, value) in enumerate(headers):
        if name == b"vary":
            if value.strip() != b"*" and b"origin" not in value.lower():
                headers[index] = (name, value + b", Origin")
            return
    headers.append(_VARY_ORIGIN)


def _normalize_origin(origin: str) -> str:
    # Browsers send "scheme://host[:port]" in lower case, without a path or trailing slash.
    return origin.strip().rstrip("/").lower()

"""Request ids: one per request, taken from ``X-Request-ID`` when safe, echoed in the response."""

from __future__ import annotations

import random
import re
from typing import Final

from nexus.http.response_headers import APPENDED, DEFAULTS, merge_defaults
from nexus.http.types import ASGIApp, Message, Receive, Scope, Send
from nexus.kernel.correlation import correlation_id

REQUEST_ID_HEADER: Final = "X-Request-ID"

_HEADER_NAME: Final = REQUEST_ID_HEADER.lower().encode("latin-1")
# Anything outside this set could smuggle CR/LF or markup into logs and response headers.
_is_safe = re.compile(rb"[A-Za-z0-9._:\-]{1,128}").fullmatch
_random_bits = random.getrandbits


def generate_request_id() -> str:
    """Return a new random request id (16 hex digits); unique, but not a secret."""
    # 3x cheaper than os.urandom (no system call), and `random` reseeds itself in a forked
    # worker, so workers forked from one master do not repeat each other's ids.
    return _random_bits(64).to_bytes(8).hex()


def get_request_id(scope: Scope) -> str | None:
    """Return the id RequestIdMiddleware gave this request, or None outside one."""
    state = scope.get("state")
    return state.get("request_id") if state else None


class RequestIdMiddleware:
    """Give each request an id: in ``scope["state"]``, the correlation id and ``X-Request-ID``.

    A client's (or proxy's) ``X-Request-ID`` is kept when it is 1 to 128 characters of
    ``A-Z a-z 0-9 . _ : -``; anything else is replaced, so it cannot inject headers or log lines.
    Events published while the request runs carry the id as their ``correlation_id``.
    """

    def __init__(self, app: ASGIApp, *, trust_incoming: bool = True) -> None:
        self.app = app
        self.trust_incoming = trust_incoming

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type != "http" and scope_type != "websocket":
            await self.app(scope, receive, send)
            return

        raw: bytes | None = None
        if self.trust_incoming:
            for name, value in scope["headers"]:
                if name == _HEADER_NAME:
                    if _is_safe(value):
                        raw = value
                    break
        if raw is None:
            request_id = _random_bits(64).to_bytes(8).hex()  # generate_request_id(), inlined
            raw = request_id.encode()
        else:
            request_id = raw.decode("latin-1")

        state = scope.get("state")
        if state is None:
            scope["state"] = {"request_id": request_id}
        else:
            state["request_id"] = request_id

        # Inner layers add their response headers here (see nexus.http.response_headers).
        appended = [(_HEADER_NAME, raw)]
        scope[APPENDED] = appended
        start = "http.response.start" if scope_type == "http" else "websocket.accept"

        async def send_with_id(message: Message) -> None:
            if message["type"] == start:
                headers = message.get("headers") or ()
                defaults = scope.get(DEFAULTS)
                if defaults is not None:
                    headers = merge_defaults(headers, *defaults)
                message["headers"] = [*headers, *appended]
            await send(message)

        token = correlation_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)

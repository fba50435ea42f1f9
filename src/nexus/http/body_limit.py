"""Request body size limit: 413 problem from Content-Length, or while a body streams in."""

from __future__ import annotations

from typing import Final

from starlette.exceptions import HTTPException

from nexus.http.problems import send_problem
from nexus.http.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_SIZE: Final = 1024 * 1024

_CLOSE: Final = ((b"connection", b"close"),)
_FRAMED_VERSIONS: Final = frozenset({"1.0", "1.1"})


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit; renders as a 413."""

    def __init__(self, max_body_size: int) -> None:
        super().__init__(413, _detail(max_body_size))


class BodyLimitMiddleware:
    """Reject request bodies larger than ``max_body_size`` bytes with a 413 problem.

    A declared Content-Length over the limit is answered at once, without calling the app
    (the server checks that the body matches a Content-Length, so such a body is not counted,
    and neither are HTTP/1 requests without a body). A chunked body, or an HTTP/2 one without
    a Content-Length, is counted as the app reads it: past the limit, ``receive``
    raises ``BodyTooLargeError``, which FastAPI's handlers (or this middleware) turn into a
    413. If the app had already started its response, it is told the client disconnected.
    """

    def __init__(self, app: ASGIApp, *, max_body_size: int = DEFAULT_MAX_BODY_SIZE) -> None:
        if max_body_size < 0:
            raise ValueError(f"max_body_size must be 0 or more bytes, got {max_body_size}.")
        self.app = app
        self.max_body_size = max_body_size
        self._detail = _detail(max_body_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared: int | None = None
        is_streamed = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    is_streamed = True  # not a number: count the body instead
            elif name == b"transfer-encoding":
                is_streamed = True
        if declared is not None and declared > self.max_body_size:
            await send_problem(send, 413, headers=_CLOSE, detail=self._detail)
            return
        # HTTP/1.x without Content-Length or Transfer-Encoding has no body (RFC 9112 6.3), and
        # the server delivers no more than a Content-Length: only other bodies need counting.
        if not is_streamed and (
            declared is not None or scope.get("http_version", "1.1") in _FRAMED_VERSIONS
        ):
            await self.app(scope, receive, send)
            return

        await _CountingResponder(self.app, self.max_body_size)(scope, receive, send)


class _CountingResponder:
    __slots__ = ("app", "is_started", "limit", "receive", "received", "send")

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.received = 0
        self.is_started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.receive = receive
        self.send = send
        try:
            await self.app(scope, self.receive_counting, self.send_tracking_start)
        except BodyTooLargeError as exc:
            if self.is_started:
                raise
            await send_problem(send, 413, headers=_CLOSE, detail=str(exc.detail))

    async def receive_counting(self) -> Message:
        if self.received > self.limit:
            if self.is_started:
                return {"type": "http.disconnect"}
            raise BodyTooLargeError(self.limit)
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                if self.is_started:
                    return {"type": "http.disconnect"}
                raise BodyTooLargeError(self.limit)
        return message

    async def send_tracking_start(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.is_started = True
        await self.send(message)


def _detail(max_body_size: int) -> str:
    return f"The request body is larger than the limit of {max_body_size} bytes."

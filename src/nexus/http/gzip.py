"""Gzip response compression for clients that accept it (never for event streams)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Final

import anyio.to_thread

from nexus.http.types import ASGIApp, Message, RawHeaders, Receive, Scope, Send

DEFAULT_EXCLUDED_TYPES: Final = (
    "text/event-stream",  # each event must reach the client as it is sent
    "application/gzip",
    "application/zip",
    "application/grpc",
    "image/",
    "audio/",
    "video/",
    "font/woff",
)

# Compressing this much inline would hold the event loop for milliseconds.
_THREAD_MINIMUM: Final = 128 * 1024


class GZipMiddleware:
    """Gzip responses of at least ``minimum_size`` bytes when the request accepts gzip.

    Responses that are already encoded, partial (206), bodiless, or of an excluded type
    (``exclude_types`` entries match a content type by prefix) pass through untouched, as do
    requests without ``gzip`` in ``Accept-Encoding``, at no cost.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        minimum_size: int = 1024,
        compress_level: int = 6,
        exclude_types: Sequence[str] = DEFAULT_EXCLUDED_TYPES,
    ) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.compress_level = compress_level
        self.exclude_types = tuple(t.lower().encode("latin-1") for t in exclude_types)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding":
                    if b"gzip" in value and (b"q=0" not in value or _accepts_gzip(value)):
                        await _GZipResponder(self, send)(scope, receive)
                        return
                    break
        await self.app(scope, receive, send)


class _GZipResponder:
    __slots__ = ("compressor", "config", "send", "start", "state")

    def __init__(self, config: GZipMiddleware, send: Send) -> None:
        self.config = config
        self.send = send
        self.start: Message | None = None
        self.state = "waiting"  # then "identity" or "gzip" once the first body decides
        self.compressor: zlib._Compress | None = None

    async def __call__(self, scope: Scope, receive: Receive) -> None:
        await self.config.app(scope, receive, self.send_compressing)

    async def send_compressing(self, message: Message) -> None:
        kind = message["type"]
        if self.state == "identity":
            await self.send(message)
        elif self.state == "gzip":
            if kind == "http.response.body":
                message["body"] = await self._compress(
                    message.get("body", b""), message.get("more_body", False)
                )
            await self.send(message)
        elif kind == "http.response.start":
            if self._is_compressible(message):
                self.start = message
            else:
                self.state = "identity"
                await self.send(message)
        elif kind == "http.response.body" and self.start is not None:
            await self._send_first_body(self.start, message)
        else:  # pathsend and the like: nothing we can compress
            self.state = "identity"
            if self.start is not None:
                await self.send(self.start)
            await self.send(message)

    def _is_compressible(self, message: Message) -> bool:
        if message["status"] in (204, 206, 304) or message.get("trailers"):
            return False
        for name, value in message.get("headers") or ():
            if name == b"content-encoding":
                return False
            if name == b"content-type" and value.lower().startswith(self.config.exclude_types):
                return False
            # Most responses declare their length: a small one need not wait for its body.
            if (
                name == b"content-length"
                and value.isdigit()
                and int(value) < self.config.minimum_size
            ):
                return False
        return True

    async def _send_first_body(self, start: Message, message: Message) -> None:
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if not more_body and len(body) < self.config.minimum_size:
            self.state = "identity"
            await self.send(start)
            await self.send(message)
            return
        self.state = "gzip"
        self.compressor = zlib.compressobj(self.config.compress_level, zlib.DEFLATED, 31)
        compressed = await self._compress(body, more_body)
        headers = _gzip_headers(start.get("headers") or ())
        if not more_body:
            headers.append((b"content-length", str(len(compressed)).encode()))
        start["headers"] = headers
        message["body"] = compressed
        await self.send(start)
        await self.send(message)

    async def _compress(self, body: bytes, more_body: bool) -> bytes:
        if len(body) >= _THREAD_MINIMUM:
            return await anyio.to_thread.run_sync(self._compress_sync, body, more_body)
        return self._compress_sync(body, more_body)

    def _compress_sync(self, body: bytes, more_body: bool) -> bytes:
        compressor = self.compressor
        if compressor is None:  # pragma: no cover - set before the first body is compressed
            raise RuntimeError("gzip compressor used before the response started")
        flush_mode = zlib.Z_SYNC_FLUSH if more_body else zlib.Z_FINISH
        return compressor.compress(body) + compressor.flush(flush_mode)


def _gzip_headers(headers: Sequence[tuple[bytes, bytes]]) -> RawHeaders:
    result: RawHeaders = [(b"content-encoding", b"gzip")]
    has_vary = False
    for name, value in headers:
        if name == b"content-length":
            continue  # recomputed for a complete body, absent (chunked) for a stream
        if name == b"vary":
            has_vary = True
            if b"accept-encoding" not in value.lower() and value.strip() != b"*":
                value += b", Accept-Encoding"
        result.append((name, value))
    if not has_vary:
        result.append((b"vary", b"Accept-Encoding"))
    return result


def _accepts_gzip(accept_encoding: bytes) -> bool:
    # Only reached when some coding has a q=0...: parse, since "gzip;q=0.5" still accepts.
    for coding in accept_encoding.split(b","):
        name, _, parameters = coding.partition(b";")
        if name.strip().lower() == b"gzip":
            _, _, quality = parameters.partition(b"=")
            try:
                return float(quality or 1) > 0
            except ValueError:
                return False
    return False

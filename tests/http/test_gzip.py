"""Gzip compression of large responses for clients that accept it."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable

import httpx
from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse

from nexus.http.gzip import GZipMiddleware
from nexus.http.types import Receive, Scope, Send

Connect = Callable[..., httpx.AsyncClient]
GZIP = {"Accept-Encoding": "gzip"}


async def test_large_response_is_compressed(app: FastAPI, connect: Connect) -> None:
    """A 12 kB body is gzipped, its Content-Length is the compressed size, and it decodes."""
    async with connect(GZipMiddleware(app, minimum_size=1024)) as client:
        response = await client.get("/large", headers=GZIP)
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert int(response.headers["content-length"]) < 1000
    assert response.text == "nexus " * 2000


async def test_small_response_is_not_compressed(app: FastAPI, connect: Connect) -> None:
    """A body under minimum_size is sent as is."""
    async with connect(GZipMiddleware(app, minimum_size=1024)) as client:
        response = await client.get("/hello", headers=GZIP)
    assert "content-encoding" not in response.headers
    assert response.json() == {"hello": "world"}


async def test_clients_without_gzip_get_identity(app: FastAPI, connect: Connect) -> None:
    """No gzip in Accept-Encoding, or gzip with q=0, means no compression; q=0.5 is fine."""
    async with connect(GZipMiddleware(app)) as client:
        identity = await client.get("/large", headers={"Accept-Encoding": "identity"})
        refused = await client.get("/large", headers={"Accept-Encoding": "br, gzip; q=0"})
        weighted = await client.get("/large", headers={"Accept-Encoding": "br;q=0, gzip;q=0.5"})
    assert "content-encoding" not in identity.headers
    assert "content-encoding" not in refused.headers
    assert weighted.headers["content-encoding"] == "gzip"


async def test_event_streams_are_never_compressed(app: FastAPI, connect: Connect) -> None:
    """text/event-stream passes through uncompressed however large it is."""
    async with connect(GZipMiddleware(app, minimum_size=100)) as client:
        response = await client.get("/events", headers=GZIP)
    assert "content-encoding" not in response.headers
    assert response.text.startswith("data: xxx")


async def test_streamed_response_is_compressed_chunk_by_chunk(connect: Connect) -> None:
    """A multi-chunk response is gzipped as one stream without a Content-Length."""
    app = FastAPI()

    @app.get("/report")
    async def report() -> StreamingResponse:
        async def rows() -> AsyncIterator[bytes]:
            for number in range(200):
                yield f"row {number}\n".encode()

        return StreamingResponse(rows(), media_type="text/csv")

    async with connect(GZipMiddleware(app, minimum_size=1024)) as client:
        response = await client.get("/report", headers=GZIP)
    assert response.headers["content-encoding"] == "gzip"
    assert "content-length" not in response.headers
    assert response.text == "".join(f"row {n}\n" for n in range(200))


async def test_already_encoded_responses_pass_through(connect: Connect) -> None:
    """A response the app encoded itself is not compressed twice."""
    app = FastAPI()
    payload = gzip.compress(b"a" * 5000)

    @app.get("/archive")
    async def archive() -> Response:
        return Response(payload, headers={"Content-Encoding": "gzip"}, media_type="text/plain")

    async with connect(GZipMiddleware(app, minimum_size=10)) as client:
        response = await client.get("/archive", headers=GZIP)
    assert response.headers["content-length"] == str(len(payload))
    assert response.text == "a" * 5000


async def test_very_large_body_is_compressed_off_the_event_loop(connect: Connect) -> None:
    """A body over 128 KiB is compressed (in a worker thread) and still decodes exactly."""
    app = FastAPI()
    payload = bytes(range(256)) * 1024

    @app.get("/blob")
    async def blob() -> Response:
        return Response(payload, media_type="application/octet-stream")

    async with connect(GZipMiddleware(app)) as client:
        response = await client.get("/blob", headers=GZIP)
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < len(payload)
    assert response.content == payload


async def test_small_body_without_declared_length_is_not_compressed(connect: Connect) -> None:
    """Without a Content-Length the first body decides: a small complete one goes as is."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tiny"})

    async with connect(GZipMiddleware(app)) as client:
        response = await client.get("/", headers=GZIP)
    assert "content-encoding" not in response.headers
    assert response.content == b"tiny"

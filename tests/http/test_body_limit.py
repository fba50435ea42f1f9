"""Request bodies over the limit are refused with a 413 problem."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from nexus.http.body_limit import BodyLimitMiddleware
from nexus.http.types import Message, Receive, Scope, Send

Connect = Callable[..., httpx.AsyncClient]
PROBLEM = "application/problem+json"


async def _chunks(count: int, size: int = 100) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


async def test_declared_length_over_the_limit_is_refused_at_once(connect: Connect) -> None:
    """A Content-Length over the limit gets a 413 without the app ever being called."""
    calls: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope)

    async with connect(BodyLimitMiddleware(app, max_body_size=1000)) as client:
        response = await client.post("/upload", content=b"x" * 1001)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["connection"] == "close"
    assert response.json()["detail"] == ("The request body is larger than the limit of 1000 bytes.")
    assert calls == []


async def test_declared_length_within_the_limit_passes(app: FastAPI, connect: Connect) -> None:
    """A body exactly at the limit reaches the route."""
    async with connect(BodyLimitMiddleware(app, max_body_size=1000)) as client:
        response = await client.post("/upload", content=b"x" * 1000)
    assert response.json() == {"size": 1000}


async def test_streamed_body_over_the_limit_is_a_413_problem(
    app: FastAPI, connect: Connect
) -> None:
    """A chunked body is counted as the route reads it, and refused once past the limit."""
    async with connect(BodyLimitMiddleware(app, max_body_size=1000)) as client:
        response = await client.post("/upload", content=_chunks(11))
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert "1000 bytes" in response.json()["detail"]


async def test_streamed_body_within_the_limit_passes(app: FastAPI, connect: Connect) -> None:
    """A chunked body under the limit is delivered whole."""
    async with connect(BodyLimitMiddleware(app, max_body_size=1000)) as client:
        response = await client.post("/upload", content=_chunks(10))
    assert response.json() == {"size": 1000}


async def test_unreadable_content_length_is_counted_instead() -> None:
    """A Content-Length that is not a number does not bypass the limit."""
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass

    chunks = iter([b"a" * 100, b"b" * 100])

    async def receive() -> Message:
        return {"type": "http.request", "body": next(chunks), "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-length", b"ten")],
    }
    await BodyLimitMiddleware(app, max_body_size=150)(scope, receive, send)
    assert sent[0]["status"] == 413


async def test_raw_asgi_app_reading_too_much_gets_a_413(connect: Connect) -> None:
    """Without FastAPI's handlers, the middleware itself answers the 413."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    async with connect(BodyLimitMiddleware(app, max_body_size=150)) as client:
        response = await client.post("/", content=_chunks(2))
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


async def test_after_responding_the_app_is_told_the_client_left() -> None:
    """Once the response started, an over-limit body ends in http.disconnect, not more bytes."""
    received: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3):
            received.append(await receive())
        await send({"type": "http.response.body", "body": b""})

    chunks = iter([b"a" * 100, b"b" * 100, b"c" * 100])

    async def receive() -> Message:
        return {"type": "http.request", "body": next(chunks), "more_body": True}

    async def send(message: Message) -> None:
        pass

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"transfer-encoding", b"chunked")],
    }
    await BodyLimitMiddleware(app, max_body_size=150)(scope, receive, send)
    assert [m["type"] for m in received] == ["http.request", "http.disconnect", "http.disconnect"]
    assert received[0]["body"] == b"a" * 100


async def test_http2_body_without_length_is_counted() -> None:
    """An HTTP/2 body may come without Content-Length or chunking, and is counted too."""
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass

    chunks = iter([b"a" * 100, b"b" * 100])

    async def receive() -> Message:
        return {"type": "http.request", "body": next(chunks), "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "http_version": "2",
        "method": "POST",
        "path": "/",
        "headers": [],
    }
    await BodyLimitMiddleware(app, max_body_size=150)(scope, receive, send)
    assert sent[0]["status"] == 413


def test_negative_limit_is_refused() -> None:
    """A negative limit is a configuration mistake, reported at construction."""
    with pytest.raises(ValueError, match="max_body_size must be 0 or more bytes, got -1"):
        BodyLimitMiddleware(FastAPI(), max_body_size=-1)

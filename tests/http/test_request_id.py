"""Each request gets an id: generated, or propagated from a safe X-Request-ID."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from nexus.http.request_id import RequestIdMiddleware
from nexus.http.types import Message, Receive, Scope, Send
from nexus.kernel.correlation import correlation_id

Connect = Callable[..., httpx.AsyncClient]


async def test_request_id_is_generated_when_absent(app: FastAPI, connect: Connect) -> None:
    """Without an incoming id, a fresh 16-hex-digit id is made, stored in state and echoed."""
    async with connect(RequestIdMiddleware(app)) as client:
        first = await client.get("/whoami")
        second = await client.get("/whoami")
    request_id = first.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", request_id)
    assert first.json()["request_id"] == request_id
    assert second.headers["x-request-id"] != request_id


async def test_safe_incoming_request_id_is_propagated(app: FastAPI, connect: Connect) -> None:
    """A well-formed X-Request-ID from the client is kept and echoed back."""
    incoming = "edge-lb:2024.06_01-abc"
    async with connect(RequestIdMiddleware(app)) as client:
        response = await client.get("/whoami", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] == incoming
    assert response.json()["request_id"] == incoming


@pytest.mark.parametrize(
    "unsafe",
    ["", "has space", "<script>", "a" * 129, "id\tTAB", "naïve"],
)
async def test_unsafe_incoming_request_id_is_replaced(
    app: FastAPI, connect: Connect, unsafe: str
) -> None:
    """An empty, overlong or out-of-alphabet X-Request-ID is replaced by a generated one."""
    async with connect(RequestIdMiddleware(app)) as client:
        response = await client.get("/whoami", headers=[(b"X-Request-ID", unsafe.encode("utf-8"))])
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])


async def test_incoming_id_is_ignored_when_not_trusted(app: FastAPI, connect: Connect) -> None:
    """With trust_incoming=False even a safe incoming id is replaced."""
    async with connect(RequestIdMiddleware(app, trust_incoming=False)) as client:
        response = await client.get("/whoami", headers={"X-Request-ID": "client-chosen"})
    assert response.headers["x-request-id"] != "client-chosen"


async def test_correlation_id_is_set_during_the_request_and_reset_after(
    app: FastAPI, connect: Connect
) -> None:
    """The kernel's correlation id is the request id while the route runs, and None after."""
    async with connect(RequestIdMiddleware(app)) as client:
        response = await client.get("/whoami", headers={"X-Request-ID": "corr-1"})
    assert response.json()["correlation_id"] == "corr-1"
    assert correlation_id.get() is None


async def test_existing_scope_state_is_kept() -> None:
    """The id is added to an existing scope["state"] (the server's lifespan state) in place."""
    seen: dict[str, object] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.update(scope["state"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-request-id", b"r-1")],
        "state": {"db": "pool"},
    }
    await RequestIdMiddleware(app)(scope, receive, send)
    assert seen == {"db": "pool", "request_id": "r-1"}
    assert (b"x-request-id", b"r-1") in sent[0]["headers"]


async def test_lifespan_passes_through() -> None:
    """Non-HTTP scopes reach the app untouched, with no state added."""
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)

    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        pass

    await RequestIdMiddleware(app)({"type": "lifespan"}, receive, send)
    assert scopes == [{"type": "lifespan"}]

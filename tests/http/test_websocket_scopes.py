"""WebSocket handshakes get a request id, trusted proxy schemes and the Host check."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, WebSocket

from nexus.http.proxy import ProxyHeadersMiddleware, TrustedHostMiddleware
from nexus.http.request_id import RequestIdMiddleware
from nexus.http.types import ASGIApp, Message, Scope
from nexus.kernel.correlation import correlation_id


def _echo_app() -> FastAPI:
    app = FastAPI()

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(
            {
                "request_id": getattr(websocket.state, "request_id", None),
                "correlation_id": correlation_id.get(),
                "scheme": websocket.url.scheme,
                "client": websocket.client.host if websocket.client else None,
            }
        )
        await websocket.close()

    return app


async def _handshake(
    app: ASGIApp, headers: dict[str, str], client: tuple[str, int] = ("127.0.0.1", 1)
) -> list[Message]:
    """Open /ws on `app` as a server would, and return everything the app sent."""
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")]
        + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": client,
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    incoming: list[Message] = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _echoed(sent: list[Message]) -> dict[str, Any]:
    [text] = [message["text"] for message in sent if message["type"] == "websocket.send"]
    result: dict[str, Any] = json.loads(text)
    return result


async def test_websocket_gets_a_request_id_in_state_and_accept_headers() -> None:
    """The handshake's id is in state, is the correlation id, and is sent with the accept."""
    sent = await _handshake(RequestIdMiddleware(_echo_app()), {"X-Request-ID": "ws-1"})
    assert sent[0]["type"] == "websocket.accept"
    assert (b"x-request-id", b"ws-1") in sent[0]["headers"]
    body = _echoed(sent)
    assert body["request_id"] == "ws-1"
    assert body["correlation_id"] == "ws-1"


async def test_websocket_behind_trusted_proxy_is_wss() -> None:
    """X-Forwarded-Proto https from a trusted proxy makes the WebSocket scheme wss."""
    app = ProxyHeadersMiddleware(_echo_app(), trusted_proxies=["10.0.0.0/8"])
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.8"}
    body = _echoed(await _handshake(app, headers, client=("10.0.0.5", 1234)))
    assert body["scheme"] == "wss"
    assert body["client"] == "192.0.2.8"


async def test_websocket_to_a_foreign_host_is_closed() -> None:
    """A handshake naming a host outside the allow-list is closed with policy violation."""
    app = TrustedHostMiddleware(_echo_app(), allowed_hosts=["api.example.com"])
    sent = await _handshake(app, {})
    assert sent == [{"type": "websocket.close", "code": 1008}]

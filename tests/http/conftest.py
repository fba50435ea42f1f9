"""A small real FastAPI app, and clients that drive any ASGI app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

from nexus.errors import EventError, PermissionDeniedError, PluginNotFoundError, PluginStateError
from nexus.http.exception_handlers import install_problem_handlers
from nexus.http.problems import ServiceUnavailableError, UnsupportedMediaTypeError
from nexus.http.types import ASGIApp
from nexus.kernel.correlation import correlation_id

Connect = Callable[..., httpx.AsyncClient]


class Item(BaseModel):
    name: str
    password: str
    quantity: int


def build_app(*, debug: bool = False) -> FastAPI:
    """A FastAPI app with problem handlers and one route per behaviour under test."""
    app = FastAPI(debug=debug)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.post("/items")
    async def create_item(item: Item) -> dict[str, str]:
        return {"name": item.name}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, detail="Short and stout.", headers={"X-Tea": "earl grey"})

    @app.get("/structured")
    async def structured() -> None:
        raise HTTPException(409, detail={"conflicts_with": "alice"})

    @app.get("/forbidden")
    async def forbidden() -> None:
        raise PermissionDeniedError("billing", "events:publish:user.*")

    @app.get("/missing")
    async def missing() -> None:
        raise PluginNotFoundError("billing", ["auth", "cache"])

    @app.get("/invalid")
    async def invalid() -> None:
        raise EventError("Topic 'user..created' has an empty segment.")

    @app.get("/wrong-state")
    async def wrong_state() -> None:
        raise PluginStateError("Plugin 'auth' is stopping; internal detail 42.")

    @app.post("/unsupported")
    async def unsupported(request: Request) -> None:
        raise UnsupportedMediaTypeError(request.headers.get("content-type"), ["application/json"])

    @app.get("/unavailable")
    async def unavailable() -> None:
        raise ServiceUnavailableError("The database is restarting.", retry_after=30)

    @app.get("/large")
    async def large() -> PlainTextResponse:
        return PlainTextResponse("nexus " * 2000)

    @app.get("/events")
    async def events() -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            yield "data: " + "x" * 4000 + "\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, object]:
        return {
            "request_id": getattr(request.state, "request_id", None),
            "correlation_id": correlation_id.get(),
            "client": request.client.host if request.client else None,
            "scheme": request.url.scheme,
        }

    install_problem_handlers(app, debug=debug)
    return app


@pytest.fixture
def app() -> FastAPI:
    """The demo app in production mode."""
    return build_app()


@pytest.fixture
def connect() -> Connect:
    """Return a factory of clients bound in-process to an ASGI app."""

    def connect(
        app: ASGIApp,
        *,
        client: tuple[str, int] = ("127.0.0.1", 50000),
        raise_app_exceptions: bool = True,
    ) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            app=app, client=client, raise_app_exceptions=raise_app_exceptions
        )
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    return connect


@pytest.fixture
def debug_app() -> FastAPI:
    """The demo app in debug mode."""
    return build_app(debug=True)

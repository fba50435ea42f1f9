"""Plugin routers are copied flat onto the plugin's app: same routes, same OpenAPI, one match."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Form, Header, HTTPException, WebSocket
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from starlette.routing import Match

from nexus import Plugin, PluginContext
from nexus.http.app import NexusApp
from nexus.http.openapi import document_problems
from nexus.http.types import Message, Scope
from nexus.testing import create_test_app, serve

PREFIX = "/api/shop"


class Item(BaseModel):
    name: str
    price: float
    note: str | None = None


class Failure(BaseModel):
    reason: str


class Kind(StrEnum):
    BOOK = "book"
    GAME = "game"


async def needs_key(x_key: Annotated[str, Header()] = "") -> None:
    if x_key != "secret":
        raise HTTPException(403, "bad key")


def unique_id(route: APIRoute) -> str:
    return f"shop-{route.name}-{'-'.join(sorted(route.methods or ()))}"


def shop_router() -> APIRouter:
    """One route per option include_router has to carry over, in a router with its own."""
    router = APIRouter(
        prefix="/v1",
        tags=["store"],
        responses={418: {"description": "Teapot"}},
        generate_unique_id_function=unique_id,
        max_body_size=64,
    )
    events = APIRouter()

    @events.post("/{callback_url}")
    async def notified(body: Item) -> None: ...

    @router.get("/items/{item_id}", response_model_exclude_none=True, summary="One item")
    async def read_item(item_id: int, kind: Kind = Kind.BOOK, q: str | None = None) -> Item:
        """Read an item.

        \f
        Hidden from OpenAPI.
        """
        return Item(name=f"{kind.value}-{item_id}", price=1.5)

    @router.post(
        "/items",
        status_code=201,
        responses={409: {"model": Failure, "description": "Exists"}},
        callbacks=events.routes,
        openapi_extra={"x-audited": True},
    )
    async def create_item(item: Item) -> dict[str, str]:
        return {"created": item.name}

    @router.put(
        "/items/{item_id}",
        dependencies=[Depends(needs_key)],
        response_model=Item,
        response_model_exclude={"note"},
        deprecated=True,
        operation_id="replaceItem",
    )
    async def replace_item(item_id: int, item: Item) -> Any:
        return item

    @router.get("/page", response_class=HTMLResponse, include_in_schema=True, tags=["pages"])
    async def page() -> str:
        return "<p>shop</p>"

    @router.get("/hidden", include_in_schema=False)
    async def hidden() -> dict[str, bool]:
        return {"hidden": True}

    @router.get("/lines")
    async def lines() -> AsyncIterator[Item]:
        for n in range(2):
            yield Item(name=f"line-{n}", price=n)

    @router.api_route("/any", methods=["GET", "PATCH"], name="anything", include_in_schema=False)
    async def any_method() -> dict[str, str]:
        return {"any": "thing"}

    @router.post("/upload", max_body_size=8)
    async def upload(data: Annotated[str, Form()]) -> dict[str, int]:
        return {"size": len(data)}

    return router


class Shop(Plugin):
    """Serves the routers `build` makes under /api/shop."""

    def __init__(self, build: Callable[[], APIRouter] = shop_router) -> None:
        self.manifest = {"name": "shop", "version": "1.0.0", "description": "A shop"}
        self.build = build

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.http.include_router(self.build())


def shop_app(build: Callable[[], APIRouter] = shop_router) -> NexusApp:
    return create_test_app(plugins=[Shop(build)])


def bare_app(build: Callable[[], APIRouter] = shop_router) -> FastAPI:
    """What FastAPI itself makes of the same router, included as the platform would."""
    app = FastAPI()
    app.include_router(build(), prefix=PREFIX, tags=["shop"])
    return app


async def test_openapi_is_that_of_fastapi_including_the_router() -> None:
    """/openapi.json shows the plugin's operations and schemas as bare FastAPI does.

    Only the error responses differ, documented as the problem documents the platform sends.
    """
    bare = document_problems(bare_app().openapi())
    async with serve(shop_app()) as client:
        ours = (await client.get("/openapi.json")).json()
    paths = {path: item for path, item in ours["paths"].items() if path.startswith(PREFIX)}
    assert json.dumps(paths, sort_keys=True) == json.dumps(bare["paths"], sort_keys=True)
    assert ours["components"] == bare["components"]
    assert len(paths) == 5  # /hidden and /any are left out, as FastAPI leaves them out


async def test_routes_carry_every_option_fastapi_gives_included_routes() -> None:
    """Each flattened route has the path and options of FastAPI's own included route."""
    router = shop_router()
    included = {
        (context.path, frozenset(context.methods or ())): context
        for context in iter_route_contexts(bare_app(lambda: router).routes)
        if isinstance(context.original_route, APIRoute)
    }
    app = shop_app(lambda: router)
    async with serve(app):
        plugin_app = app.dispatcher.apps()["shop"]
    routes = [route for route in plugin_app.routes if isinstance(route, APIRoute)]
    assert [type(route) for route in plugin_app.routes] == [APIRoute] * len(included)
    assert {(r.path, frozenset(r.methods or ())) for r in routes} == set(included)
    for route in routes:
        context = included[(route.path, frozenset(route.methods or ()))]
        for option in OPTIONS:
            assert getattr(route, option) == getattr(context, option), (route.path, option)
        assert route.response_class == context.response_class or (
            type(route.response_class) is type(context.response_class)
            and route.response_class.value == context.response_class.value  # type: ignore[union-attr]
        )
        callbacks = [getattr(c, "path", None) for c in route.callbacks or []]
        assert callbacks == [getattr(c, "path", None) for c in context.callbacks or []]
        assert route.dependency_overrides_provider is plugin_app
        original = context.original_route
        assert isinstance(original, APIRoute) and route.form_limits == original.form_limits


async def test_flattened_routes_behave_as_included_ones() -> None:
    """Requests get the same answers from the plugin as from bare FastAPI with the router."""
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/items/3?kind=game", {}),
        ("GET", "/v1/items/x", {}),
        ("POST", "/v1/items", {"json": {"name": "pen", "price": 2}}),
        ("PUT", "/v1/items/1", {"json": {"name": "pen", "price": 2, "note": "n"}}),
        (
            "PUT",
            "/v1/items/1",
            {"json": {"name": "pen", "price": 2, "note": "n"}, "headers": {"x-key": "secret"}},
        ),
        ("GET", "/v1/page", {}),
        ("GET", "/v1/hidden", {}),
        ("GET", "/v1/lines", {}),
        ("PATCH", "/v1/any", {}),
        ("DELETE", "/v1/any", {}),
        ("POST", "/v1/upload", {"data": {"data": "four"}}),
        ("POST", "/v1/upload", {"data": {"data": "far too long for eight bytes"}}),
        ("POST", "/v1/items", {"content": b"x" * 100, "headers": {"content-type": "text/plain"}}),
    ]
    async with serve(shop_app()) as ours, serve(bare_app()) as theirs:  # type: ignore[arg-type]
        for method, path, options in requests:
            mine = await ours.request(method, PREFIX + path, **options)
            bare = await theirs.request(method, PREFIX + path, **options)
            assert mine.status_code == bare.status_code, (method, path, mine.text)
            if mine.is_success:
                assert mine.content == bare.content, (method, path)
                for header in ("content-type", "content-length"):
                    assert mine.headers.get(header) == bare.headers.get(header), (path, header)
            if mine.status_code == 405:
                assert mine.headers["allow"] == bare.headers["allow"]


#: APIRoute attributes that include_router derives from the route, its router and the app.
OPTIONS = (
    *("name", "tags", "summary", "description", "response_description", "responses"),
    *("deprecated", "operation_id", "include_in_schema", "status_code", "unique_id"),
    *("response_model", "response_model_include", "response_model_exclude"),
    *("response_model_by_alias", "response_model_exclude_unset"),
    *("response_model_exclude_defaults", "response_model_exclude_none", "openapi_extra"),
    *("strict_content_type", "max_body_size", "stream_item_type", "is_json_stream"),
    *("is_sse_stream", "endpoint", "dependencies", "path_format"),
)


class CountingRoute(APIRoute):
    """A custom route class that counts how often it is asked whether it matches."""

    calls = 0

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        CountingRoute.calls += 1
        return super().matches(scope)


async def test_a_request_matches_its_route_once_and_keeps_its_route_class() -> None:
    """A plugin route is matched once per request, by the router's own route class."""

    def counted() -> APIRouter:
        router = APIRouter(route_class=CountingRoute)

        @router.get("/counted")
        async def count() -> dict[str, int]:
            return {"ok": 1}

        return router

    async with serve(shop_app(counted)) as client:
        CountingRoute.calls = 0
        response = await client.get(f"{PREFIX}/counted")
    assert response.json() == {"ok": 1}
    assert CountingRoute.calls == 1


def mixed_router() -> APIRouter:
    """Routes that cannot be copied: a websocket and a nested router with a dependency."""
    router = APIRouter()
    nested = APIRouter()

    @router.get("/plain")
    async def plain() -> dict[str, str]:
        return {"plain": "yes"}

    @router.websocket("/ws")
    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    @nested.get("/inner")
    async def inner() -> dict[str, str]:
        return {"inner": "yes"}

    router.include_router(nested, prefix="/nested", dependencies=[Depends(needs_key)])
    return router


async def websocket_messages(app: NexusApp, path: str) -> list[Message]:
    """Open a websocket on `app` as a server would; what the app sent."""
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
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


async def test_routers_that_cannot_be_copied_are_included_as_they_are() -> None:
    """Websockets and nested routers (with their dependencies) keep working."""
    app = shop_app(mixed_router)
    async with serve(app) as client:
        plain = await client.get(f"{PREFIX}/plain")
        refused = await client.get(f"{PREFIX}/nested/inner")
        inner = await client.get(f"{PREFIX}/nested/inner", headers={"x-key": "secret"})
        sent = await websocket_messages(app, f"{PREFIX}/ws")
    assert plain.json() == {"plain": "yes"}
    assert refused.status_code == 403
    assert inner.json() == {"inner": "yes"}
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "hello"


async def test_router_wide_form_limits_still_apply() -> None:
    """A router's own form limits hold for its routes (it is included as it is)."""

    def limited() -> APIRouter:
        router = APIRouter(form_limits={"max_fields": 1})

        @router.post("/form")
        async def form(a: Annotated[str, Form()], b: Annotated[str, Form()] = "") -> dict[str, str]:
            return {"a": a, "b": b}

        return router

    async with serve(shop_app(limited)) as client:
        one = await client.post(f"{PREFIX}/form", data={"a": "1"})
        two = await client.post(f"{PREFIX}/form", data={"a": "1", "b": "2"})
    assert one.json() == {"a": "1", "b": ""}
    assert two.status_code >= 400


async def test_frontend_routes_are_served(tmp_path: Path) -> None:
    """A router's frontend (static files, low-priority routes) is served under the plugin."""
    if not hasattr(APIRouter, "frontend"):
        pytest.skip("this FastAPI has no APIRouter.frontend")
    (tmp_path / "index.html").write_text("<p>front</p>")

    def with_frontend() -> APIRouter:
        router = APIRouter()

        @router.get("/api-route")
        async def route() -> dict[str, str]:
            return {"route": "yes"}

        router.frontend("/app", directory=tmp_path)
        return router

    async with serve(shop_app(with_frontend)) as client:
        page = await client.get(f"{PREFIX}/app/index.html")
        route = await client.get(f"{PREFIX}/api-route")
    assert (page.status_code, page.text) == (200, "<p>front</p>")
    assert route.json() == {"route": "yes"}


async def test_plain_text_response_class_of_the_router_is_kept() -> None:
    """A router's default response class reaches its flattened routes."""

    def texty() -> APIRouter:
        router = APIRouter(default_response_class=PlainTextResponse)

        @router.get("/text")
        async def text() -> str:
            return "just text"

        return router

    async with serve(shop_app(texty)) as client:
        response = await client.get(f"{PREFIX}/text")
    assert response.text == "just text"
    assert response.headers["content-type"].startswith("text/plain")

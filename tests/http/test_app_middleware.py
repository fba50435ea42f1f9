"""The platform middleware and plugin middleware, observed through the whole app."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from tests.http.test_app import assert_problem, build_app, serve

from nexus import Event, Plugin, PluginContext
from nexus.http.types import ASGIApp, Message, Receive, Scope, Send


class Orders(Plugin):
    """Publishes `orders.placed` from a route and records the events it receives."""

    manifest = {
        "name": "orders",
        "version": "1.0.0",
        "permissions": ["events:publish:orders.*", "events:subscribe:orders.*"],
    }

    def __init__(self) -> None:
        self.received: list[Event] = []
        self.arrived = asyncio.Event()

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.post("/place")
        async def place(request: Request) -> dict[str, str]:
            event = await ctx.events.publish("orders.placed", {"size": len(await request.body())})
            return {"event": event.id}

        @router.get("/catalogue")
        async def catalogue() -> list[dict[str, Any]]:
            return [
                {"sku": f"sku-{i:04d}", "title": "A thing to buy", "price": i} for i in range(200)
            ]

        ctx.events.subscribe("orders.*", self.on_event)
        ctx.http.include_router(router)

    async def on_event(self, event: Event) -> None:
        self.received.append(event)
        self.arrived.set()


# -- platform middleware ---------------------------------------------------------------------


async def test_every_response_carries_a_request_id(tmp_path: Path) -> None:
    """A generated X-Request-ID on plugin routes, platform routes and 404s; a safe one is kept."""
    async with serve(build_app(tmp_path, Orders())) as client:
        responses = [
            await client.get("/api/orders/catalogue"),
            await client.get("/livez"),
            await client.get("/api/nobody"),
        ]
        kept = await client.get("/livez", headers={"X-Request-ID": "trace-42.a:b"})
        replaced = await client.get("/livez", headers={"X-Request-ID": "bad id\twith tab"})
    ids = [response.headers["x-request-id"] for response in responses]
    assert all(re.fullmatch(r"[0-9a-f]{16}", request_id) for request_id in ids)
    assert len(set(ids)) == 3
    assert kept.headers["x-request-id"] == "trace-42.a:b"
    assert re.fullmatch(r"[0-9a-f]{16}", replaced.headers["x-request-id"])


async def test_events_published_by_a_route_carry_the_request_id(tmp_path: Path) -> None:
    """The request id becomes the correlation id of events the route publishes."""
    orders = Orders()
    async with serve(build_app(tmp_path, orders)) as client:
        given = await client.post("/api/orders/place", headers={"X-Request-ID": "order-77"})
        await asyncio.wait_for(orders.arrived.wait(), 5)
        orders.arrived.clear()
        generated = await client.post("/api/orders/place", content=b"abc")
        await asyncio.wait_for(orders.arrived.wait(), 5)
    assert given.status_code == generated.status_code == 200
    first, second = orders.received
    assert (first.id, first.type, first.source) == (
        given.json()["event"],
        "orders.placed",
        "orders",
    )
    assert first.correlation_id == "order-77"
    assert second.correlation_id == generated.headers["x-request-id"]
    assert second.data == {"size": 3}


async def test_security_headers_on_plugin_routes_and_errors(tmp_path: Path) -> None:
    """JSON responses and problems carry nosniff, DENY framing, no-referrer and a strict CSP."""
    async with serve(build_app(tmp_path, Orders())) as client:
        for response in (
            await client.get("/api/orders/catalogue"),
            await client.get("/api/orders/missing"),
        ):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["content-security-policy"].startswith("default-src 'none'")
        docs = await client.get("/docs")
    assert "script-src 'self' 'unsafe-inline'" in docs.headers["content-security-policy"]


async def test_large_json_is_gzipped_for_clients_that_accept_it(tmp_path: Path) -> None:
    """A JSON body over the minimum size is compressed; small ones and other clients are not."""
    async with serve(build_app(tmp_path, Orders())) as client:
        zipped = await client.get("/api/orders/catalogue", headers={"Accept-Encoding": "gzip"})
        plain = await client.get("/api/orders/catalogue", headers={"Accept-Encoding": "identity"})
        small = await client.get("/livez", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in zipped.headers["vary"].lower()
    assert int(zipped.headers["content-length"]) < len(plain.content) / 4
    assert zipped.json() == plain.json() and len(plain.json()) == 200
    assert "content-encoding" not in plain.headers and "content-encoding" not in small.headers


async def test_oversized_body_is_a_413_problem(tmp_path: Path) -> None:
    """A body over http.body_limit.max_bytes is refused before the route runs."""
    orders = Orders()
    app = build_app(tmp_path, orders, http={"body_limit": {"max_bytes": 1000}})
    async with serve(app) as client:
        refused = await client.post("/api/orders/place", content=b"x" * 1001)
        accepted = await client.post("/api/orders/place", content=b"x" * 1000)
        await asyncio.wait_for(orders.arrived.wait(), 5)
    assert "1000" in assert_problem(refused, 413)["detail"]
    assert accepted.status_code == 200
    assert [event.data for event in orders.received] == [{"size": 1000}]


async def test_default_body_limit_is_one_mebibyte(tmp_path: Path) -> None:
    """Without configuration a body just over 1 MiB is refused."""
    async with serve(build_app(tmp_path, Orders())) as client:
        response = await client.post("/api/orders/place", content=b"x" * (1024 * 1024 + 1))
    assert_problem(response, 413)


async def test_cross_origin_requests_are_denied_by_default(tmp_path: Path) -> None:
    """No CORS header is sent unless origins are configured, so browsers refuse to share."""
    async with serve(build_app(tmp_path, Orders())) as client:
        simple = await client.get(
            "/api/orders/catalogue", headers={"Origin": "https://evil.example"}
        )
        preflight = await client.options(
            "/api/orders/place",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert simple.status_code == 200
    assert not any(name.startswith("access-control-") for name in simple.headers)
    assert preflight.status_code >= 400
    assert not any(name.startswith("access-control-") for name in preflight.headers)


async def test_configured_origins_are_allowed_and_others_refused(tmp_path: Path) -> None:
    """With http.cors.allow_origins, listed origins get CORS headers; unlisted ones do not."""
    app = build_app(tmp_path, Orders(), http={"cors": {"allow_origins": ["https://app.example"]}})
    async with serve(app) as client:
        preflight = await client.options(
            "/api/orders/place",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        simple = await client.get(
            "/api/orders/catalogue", headers={"Origin": "https://app.example"}
        )
        other = await client.get(
            "/api/orders/catalogue", headers={"Origin": "https://evil.example"}
        )
        refused = await client.options(
            "/api/orders/place",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert "X-Request-ID" in simple.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in other.headers
    assert "origin" in other.headers["vary"].lower()
    assert "not allowed" in assert_problem(refused, 403)["detail"]


async def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    """Past the burst a client gets 429 problems with Retry-After; health checks stay exempt."""
    app = build_app(tmp_path, Orders(), http={"rate_limit": {"rate": 0.5, "burst": 3}})
    async with serve(app) as client:
        statuses = [(await client.get("/api/orders/catalogue")).status_code for _ in range(3)]
        limited = await client.get("/api/orders/catalogue")
        livez = await client.get("/livez")
    assert statuses == [200, 200, 200]
    assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit-remaining"] == "0"
    assert livez.status_code == 200


# -- plugin middleware -----------------------------------------------------------------------


class Stamp:
    """A pure ASGI middleware that records its name per request and labels the response."""

    def __init__(self, app: ASGIApp, *, label: str, seen: list[str]) -> None:
        self.app, self.label, self.seen = app, label, seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.seen.append(self.label)

        async def send_labelled(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-stamp", self.label.encode())]
            await send(message)

        await self.app(scope, receive, send_labelled)


class Stamping(Plugin):
    """Adds one Stamp middleware per (label, position) and serves a trivial route."""

    def __init__(self, name: str, layers: list[tuple[str, int]], seen: list[str]) -> None:
        self.manifest = {"name": name, "version": "1.0.0"}
        self.layers, self.seen = layers, seen

    async def setup(self, ctx: PluginContext[Any]) -> None:
        for label, position in self.layers:
            ctx.http.add_middleware(Stamp, position=position, label=label, seen=self.seen)


def stamps(headers: Any) -> list[str]:
    return [value for name, value in headers.multi_items() if name == "x-stamp"]


async def test_plugin_middleware_wraps_requests_in_position_order(tmp_path: Path) -> None:
    """Lower positions wrap outermost, across plugins; every request passes, platform ones too."""
    seen: list[str] = []
    first = Stamping("first", [("a10", 10), ("a-5", -5)], seen)
    second = Stamping("second", [("b0", 0), ("b20", 20)], seen)
    app = build_app(tmp_path, first, second)
    async with serve(app) as client:
        response = await client.get("/livez")
        missing = await client.get("/api/nobody")
    assert seen == ["a-5", "b0", "a10", "b20"] * 2
    # Inner layers see the response first, so their labels come first.
    assert stamps(response.headers) == ["b20", "a10", "b0", "a-5"]
    assert stamps(missing.headers) == ["b20", "a10", "b0", "a-5"]


async def test_plugin_middleware_follows_the_plugin_lifecycle(tmp_path: Path) -> None:
    """A plugin's middleware stops applying when it is disabled or unloaded, and returns on enable."""
    seen: list[str] = []
    app = build_app(
        tmp_path,
        Stamping("outer", [("outer", 1)], seen),
        Stamping("inner", [("inner", 2)], seen),
    )
    async with serve(app) as client:
        both = await client.get("/livez")
        await app.kernel.plugins.disable("outer")
        without_outer = await client.get("/livez")
        await app.kernel.plugins.enable("outer")
        restored = await client.get("/livez")
        await app.kernel.plugins.unload("inner")
        without_inner = await client.get("/livez")
    assert stamps(both.headers) == ["inner", "outer"]
    assert stamps(without_outer.headers) == ["inner"]
    assert stamps(restored.headers) == ["inner", "outer"]
    assert stamps(without_inner.headers) == ["outer"]
    assert seen == ["outer", "inner", "inner", "outer", "inner", "outer"]


async def test_plugin_middleware_sees_the_request_id_and_platform_headers_wrap_it(
    tmp_path: Path,
) -> None:
    """Plugin middleware runs inside the platform stack: after request ids, before routing."""
    observed: list[str | None] = []

    class Observe:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            observed.append(scope.get("state", {}).get("request_id"))
            await self.app(scope, receive, send)

    class Observer(Plugin):
        manifest = {"name": "observer", "version": "1.0.0"}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            ctx.http.add_middleware(Observe)

    async with serve(build_app(tmp_path, Observer())) as client:
        response = await client.get("/livez", headers={"X-Request-ID": "seen-by-plugin"})
    assert observed == ["seen-by-plugin"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_plugin_middleware_keeps_its_instance_when_another_plugin_changes(
    tmp_path: Path,
) -> None:
    """A plugin's middleware object lives as long as the plugin, whatever other plugins do."""
    instances: list[Counting] = []

    class Counting:
        def __init__(self, app: ASGIApp) -> None:
            self.app, self.count = app, 0
            instances.append(self)

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            self.count += scope["type"] == "http"
            await self.app(scope, receive, send)

    class Metering(Plugin):
        manifest = {"name": "metering", "version": "1.0.0"}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            ctx.http.add_middleware(Counting)

    app = build_app(tmp_path, Metering(), Stamping("other", [("other", 5)], []))
    async with serve(app) as client:
        await client.get("/livez")
        await app.kernel.plugins.disable("other")
        await client.get("/livez")
    assert len(instances) == 1
    assert instances[0].count == 2


class Guarded:
    """Keeps what it wraps under another name and exposes `app` read-only."""

    def __init__(self, app: ASGIApp, *, label: str, seen: list[str]) -> None:
        self._inner, self.label, self.seen = app, label, seen

    @property
    def app(self) -> ASGIApp:
        return self._inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(self.label)
        await self._inner(scope, receive, send)


async def test_middleware_keeping_its_app_elsewhere_stays_chained_when_layers_change(
    tmp_path: Path,
) -> None:
    """Layers that cannot be re-pointed still reach the next layer as others come and go."""
    seen: list[str] = []

    class Keeper(Plugin):
        manifest = {"name": "keeper", "version": "1.0.0"}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            ctx.http.add_middleware(Guarded, position=0, label="guarded", seen=seen)

    app = build_app(tmp_path, Keeper(), Stamping("inner", [("inner", 5)], seen))
    async with serve(app) as client:
        first = await client.get("/livez")
        await app.kernel.plugins.disable("inner")
        second = await client.get("/livez")
        await app.kernel.plugins.enable("inner")
        third = await client.get("/livez")
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert seen == ["guarded", "inner", "guarded", "guarded", "inner"]
    assert stamps(third.headers) == ["inner"]


async def test_middleware_stages_cost_no_call_of_their_own(tmp_path: Path) -> None:
    """The platform stack calls plugin layers (or, with none, the next layer) directly."""
    from nexus.http.facet import PluginMiddlewareSlot

    def chain(app: Any) -> list[Any]:
        layers, layer = [], app._entry
        while layer is not None:
            layers.append(layer)
            layer = getattr(layer, "app", None)
        return layers

    seen: list[str] = []
    app = build_app(tmp_path, Stamping("stamp", [("s", 0)], seen))
    async with serve(app) as client:
        with_layer = chain(app)
        await app.kernel.plugins.disable("stamp")
        without = chain(app)
        assert (await client.get("/livez")).status_code == 200
    assert not any(isinstance(layer, PluginMiddlewareSlot) for layer in with_layer + without)
    assert any(isinstance(layer, Stamp) for layer in with_layer)
    assert not any(isinstance(layer, Stamp) for layer in without)
    assert without[-1] is app.dispatcher

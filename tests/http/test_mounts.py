"""Root path mounts (`at="/admin"`) and authentication-stage plugin middleware."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from nexus import Plugin, PluginContext, PluginState
from nexus.http.types import Receive, Scope, Send
from nexus.testing import create_test_app, serve


class Console(Plugin):
    """Serves /console when granted http:mount:console."""

    def __init__(
        self, name: str = "console", grants: tuple[str, ...] = ("http:mount:console",)
    ) -> None:
        self.manifest = {"name": name, "version": "1.0", "permissions": list(grants)}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.get("/")
        async def home() -> dict[str, str]:
            return {"served_by": ctx.name}

        ctx.http.include_router(router, at="/console")


async def test_root_mount_serves_and_unserves_with_the_plugin() -> None:
    """A granted plugin serves /console; disabling it makes /console a 404 problem."""
    app = create_test_app(plugins=[Console()])
    async with serve(app) as client:
        assert (await client.get("/console/")).json() == {"served_by": "console"}
        assert "/console/" in (await client.get("/openapi.json")).json()["paths"]
        await app.kernel.plugins.disable("console")
        response = await client.get("/console/")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


async def test_root_mount_needs_permission_and_is_exclusive() -> None:
    """Mounting without the grant fails setup; a second plugin on the same root fails to activate."""
    app = create_test_app(
        plugins=[Console("sneaky", grants=()), Console("console"), Console("copycat")]
    )
    async with serve(app):
        sneaky = app.kernel.plugins.status("sneaky")
        assert sneaky.state is PluginState.FAILED
        assert "lacks permission 'http:mount:console'" in str(sneaky.failure)
        copycat = app.kernel.plugins.status("copycat")
        assert copycat.failure is not None and copycat.failure.stage == "activate"
        assert "plugin 'console' already does" in copycat.failure.reason


async def test_reserved_roots_are_refused() -> None:
    """A plugin cannot take a path the platform serves."""

    class Hijack(Plugin):
        manifest = {"name": "hijack", "version": "1.0", "permissions": ["http:mount:livez"]}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            ctx.http.include_router(APIRouter(), at="/livez")

    app = create_test_app(plugins=[Hijack()])
    async with serve(app) as client:
        assert "not one the platform serves" in str(app.kernel.plugins.status("hijack").failure)
        assert (await client.get("/livez")).status_code == 200


class StampUser:
    """Authentication-stage middleware: every caller is 'ada'."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["user"] = "ada"
        await self.app(scope, receive, send)


class Auth(Plugin):
    manifest = {"name": "auth", "version": "1.0"}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.http.add_middleware(StampUser, stage="authentication")
        router = APIRouter()

        @router.get("/me")
        async def me(request: Request) -> dict[str, Any]:
            return {"user": request.scope["state"].get("user")}

        ctx.http.include_router(router)


async def test_authentication_stage_runs_before_rate_limiting() -> None:
    """The user set by authentication-stage middleware keys the rate limit and reaches routes."""
    config = {"http": {"rate_limit": {"enabled": True, "rate": 1, "burst": 2}}}
    app = create_test_app(plugins=[Auth()], config=config)
    async with serve(app) as client:
        assert (await client.get("/api/auth/me")).json() == {"user": "ada"}
        statuses = [(await client.get("/api/auth/me")).status_code for _ in range(3)]
        assert statuses[-1] == 429
        await app.kernel.plugins.disable("auth")
        # Without the authentication middleware the caller is keyed by address: a fresh bucket,
        # so the (now unserved) route answers 404 rather than 429.
        assert (await client.get("/api/auth/me")).status_code == 404

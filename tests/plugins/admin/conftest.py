"""The admin plugin with database, auth, audit and monitoring on SQLite in tmp_path, and helpers."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from nexus import Plugin, PluginContext
from nexus.http.app import NexusApp
from nexus.kernel import PluginSource
from nexus.plugins.admin import AdminPlugin
from nexus.plugins.audit import AuditPlugin
from nexus.plugins.auth import AUTH, Auth
from nexus.plugins.auth.plugin import AuthPlugin
from nexus.plugins.database import DatabasePlugin
from nexus.plugins.monitoring import MonitoringPlugin
from nexus.testing import create_test_app, serve
from tests.conftest import builtin_plugin

#: Cheap argon2id parameters, so tests hash in microseconds rather than tenths of a second.
FAST_HASHING = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
PASSWORD = "correct horse battery staple"
ORIGIN = "http://testserver"

_PLUGINS: dict[str, Callable[[], Plugin]] = {
    "database": DatabasePlugin,
    "auth": AuthPlugin,
    "audit": AuditPlugin,
    "monitoring": MonitoringPlugin,
    "admin": AdminPlugin,
}


def builtin(name: str) -> PluginSource:
    """A built-in plugin with its real manifest.json, served inline (no entry-point scan)."""
    return builtin_plugin(_PLUGINS[name])


class Probe(Plugin):
    """A small plugin with routes: one answers, one fails, one publishes an event."""

    manifest = {
        "name": "probe",
        "version": "1.0.0",
        "description": "Answers pings and publishes events on request",
        "permissions": ["events:publish:probe.**"],
    }

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.get("/ping")
        async def ping() -> dict[str, bool]:
            return {"pong": True}

        @router.get("/boom")
        async def boom() -> None:
            raise RuntimeError("the probe failed on purpose")

        @router.post("/publish/{topic}")
        async def publish(topic: str) -> dict[str, str]:
            event = await ctx.events.publish(f"probe.{topic}", {"topic": topic})
            return {"id": event.id}

        ctx.http.include_router(router)


AppFactory = Callable[..., NexusApp]


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    """Build the app: database, auth, audit, monitoring, admin and the probe plugin."""

    def make(
        *,
        admin: Mapping[str, Any] | None = None,
        without: tuple[str, ...] = (),
        extra: tuple[PluginSource | Plugin, ...] = (),
        http: Mapping[str, Any] | None = None,
        database: Mapping[str, Any] | None = None,
        data_dir: Path | None = None,
    ) -> NexusApp:
        plugins: list[PluginSource | Plugin] = [
            builtin(name) for name in _PLUGINS if name not in without
        ]
        plugins.extend([Probe(), *extra])
        config: dict[str, Any] = {
            "data_dir": str(data_dir or tmp_path / "data"),
            "plugins": {
                "database": dict(database or {}),
                "auth": {"password_hashing": FAST_HASHING},
                "admin": dict(admin or {}),
            },
            "http": {"rate_limit": {"enabled": False}, **(http or {})},
        }
        return create_test_app(plugins=plugins, config=config)

    return make


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Wait until `check()` holds (events are delivered by the bus's own tasks)."""
    try:
        async with asyncio.timeout(10):
            while True:
                result = check()
                if await result if inspect.isawaitable(result) else result:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def auth_of(app: NexusApp) -> Auth:
    """The running auth service."""
    return app.kernel.services.get(AUTH)


async def create_users(app: NexusApp) -> None:
    """`root` (admin), `viewer` (a role without admin:access), `operator` (admin:access only)."""
    auth = auth_of(app)
    await auth.set_role("viewer", ["notes:read"])
    await auth.set_role("operator", ["admin:access"])
    await auth.create_user("root", PASSWORD, roles=["admin"])
    await auth.create_user("viewer", PASSWORD, roles=["viewer"])
    await auth.create_user("operator", PASSWORD, roles=["operator"])


def login_token(page: str) -> str:
    """The CSRF token in the sign-in form's hidden field."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, username: str = "root") -> httpx.Response:
    """Sign in through the form as a browser would; returns the POST's response."""
    form = await client.get("/admin/login")
    return await client.post(
        "/admin/login",
        data={"username": username, "password": PASSWORD, "csrf_token": login_token(form.text)},
        headers={"Origin": ORIGIN},
    )


def csrf_of(page: str) -> str:
    """The session's CSRF token from the dashboard page."""
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert found is not None, page
    return found.group(1)


async def admin_client(client: httpx.AsyncClient, username: str = "root") -> str:
    """Sign `client` in as an admin; returns the session's CSRF token."""
    response = await sign_in(client, username)
    assert response.status_code == 303, response.text
    return csrf_of((await client.get("/admin")).text)


@pytest.fixture
async def served(make_app: AppFactory) -> AsyncIterator[tuple[NexusApp, httpx.AsyncClient]]:
    """The default app, running, with its users created."""
    app = make_app()
    async with serve(app) as client:
        await create_users(app)
        yield app, client

"""An application with the database, auth and audit built-ins on SQLite, and helpers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from nexus import Plugin
from nexus.http.app import NexusApp
from nexus.kernel import PluginSource, inline_plugin
from nexus.plugins.audit import AUDIT, AuditLog, AuditPlugin
from nexus.plugins.auth import AUTH, Auth
from nexus.plugins.auth.plugin import AuthPlugin
from nexus.plugins.database import DatabasePlugin
from nexus.testing import create_test_app

PASSWORD = "correct horse battery staple"
#: Cheap argon2id parameters: logins in microseconds rather than tenths of a second.
FAST_HASHING = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}

T = TypeVar("T")


def builtin(name: str, factory: Callable[[], Plugin]) -> PluginSource:
    """A built-in plugin with its real manifest.json, served inline (no entry-point scan)."""
    package = Path(__file__).parents[3] / "src" / "nexus" / "plugins" / name
    return inline_plugin(json.loads((package / "manifest.json").read_text()), factory)


AppFactory = Callable[..., NexusApp]


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    """database + audit (+ auth unless `with_auth=False`) + `plugins`, on SQLite in tmp_path."""

    def make(
        *,
        plugins: Sequence[PluginSource | Plugin] = (),
        audit: Mapping[str, Any] | None = None,
        events: Mapping[str, Any] | None = None,
        with_auth: bool = True,
    ) -> NexusApp:
        builtins = [builtin("database", DatabasePlugin), builtin("audit", AuditPlugin)]
        if with_auth:
            builtins.append(builtin("auth", AuthPlugin))
        config: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"),
            "plugins": {"auth": {"password_hashing": FAST_HASHING}, "audit": dict(audit or {})},
            "events": dict(events or {}),
        }
        return create_test_app(plugins=[*builtins, *plugins], config=config)

    return make


def auth_of(app: NexusApp) -> Auth:
    """The running Auth service."""
    return app.kernel.services.get(AUTH)


def audit_of(app: NexusApp) -> AuditLog:
    """An AuditLog as the platform itself gets it (source "nexus")."""
    return app.kernel.services.get(AUDIT)


async def login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD, *, request_id: str = ""
) -> httpx.Response:
    """POST the OAuth2 password form, with an X-Request-ID when given."""
    form = {"grant_type": "password", "username": username, "password": password}
    headers = {"X-Request-ID": request_id} if request_id else {}
    return await client.post("/api/auth/token", data=form, headers=headers)


async def bearer(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    """Sign in and return the Authorization header carrying the access token."""
    response = await login(client, username)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout: float = 5.0) -> T:
    """The first truthy result of `check`, polled until `timeout` (events arrive async)."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.005)

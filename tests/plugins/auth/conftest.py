"""An application with the database and auth built-ins on SQLite in tmp_path, and helpers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import yaml
from fastapi import APIRouter, Depends

from nexus import Event, Plugin, PluginContext
from nexus.http.app import NexusApp, create_app, load_app_config
from nexus.kernel import PluginSource, inline_plugin
from nexus.kernel.correlation import actor
from nexus.plugins.auth import AUTH, Auth, Principal, current_principal, require
from nexus.plugins.auth.plugin import AuthPlugin
from nexus.plugins.database import DatabasePlugin

#: Cheap argon2id parameters, so tests hash in microseconds rather than tenths of a second.
FAST_HASHING = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
PASSWORD = "correct horse battery staple"


def builtin(name: str, factory: Callable[[], Plugin]) -> PluginSource:
    """A built-in plugin with its real manifest.json, served inline (no entry-point scan)."""
    package = Path(__file__).parents[3] / "src" / "nexus" / "plugins" / name
    return inline_plugin(json.loads((package / "manifest.json").read_text()), factory)


class Notes(Plugin):
    """Another plugin whose routes use the auth dependencies."""

    manifest = {"name": "notes", "version": "1.0", "optional": {"auth": ""}}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.get("/notes", dependencies=[Depends(require("notes:read"))])
        async def read_notes() -> dict[str, Any]:
            return {"notes": [], "actor": actor.get()}

        @router.post("/notes")
        async def write_note(
            principal: Annotated[Principal, Depends(require("notes:write"))],
        ) -> dict[str, Any]:
            return {"written_by": principal.username}

        @router.delete("/notes/{note_id}", dependencies=[Depends(require("notes:delete"))])
        async def delete_note(note_id: int) -> dict[str, Any]:
            return {"deleted": note_id}

        @router.get("/whoami")
        async def whoami(principal: Annotated[Principal, Depends(current_principal)]) -> Any:
            return {"username": principal.username, "kind": principal.kind}

        @router.get("/open")
        async def open_route() -> dict[str, Any]:
            return {"actor": actor.get()}

        ctx.http.include_router(router)


class Recorder(Plugin):
    """Records every auth.** and security.** event it is delivered."""

    def __init__(self) -> None:
        self.manifest = {
            "name": "recorder",
            "version": "1.0",
            "permissions": ["events:subscribe:auth.**", "events:subscribe:security.**"],
        }
        self.events: list[Event] = []

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.events.subscribe("auth.**", self.record)
        ctx.events.subscribe("security.**", self.record)

    async def record(self, event: Event) -> None:
        self.events.append(event)

    def of(self, topic: str) -> list[dict[str, Any]]:
        """The data of the recorded events of one topic."""
        return [event.data for event in self.events if event.type == topic]

    async def wait_for(self, topic: str, count: int = 1) -> list[dict[str, Any]]:
        """The data of `topic` events once `count` of them arrived (delivery is async)."""
        async with asyncio.timeout(5):
            while len(self.of(topic)) < count:  # noqa: ASYNC110 - the bus delivers in its tasks
                await asyncio.sleep(0.001)
        return self.of(topic)


AppFactory = Callable[..., NexusApp]


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    """Build the app: database + auth (+ `plugins`), `auth` settings merged over fast hashing."""

    def make(
        *,
        auth: Mapping[str, Any] | None = None,
        plugins: Sequence[PluginSource | Plugin] = (),
        environment: str = "development",
        database: Mapping[str, Any] | None = None,
        data_dir: Path | None = None,
    ) -> NexusApp:
        settings: dict[str, Any] = {"password_hashing": FAST_HASHING, **(auth or {})}
        document: dict[str, Any] = {
            "data_dir": str(data_dir or tmp_path / "data"),
            "app": {"environment": environment},
            "kernel": {"entry_points": False},
            "plugins": {"auth": settings, "database": dict(database or {})},
        }
        # A real file: an environment given in code cannot (yet) select "production".
        path = tmp_path / "nexus.yaml"
        path.write_text(yaml.safe_dump(document))
        return create_app(
            load_app_config(path, env={}),
            plugins=[builtin("database", DatabasePlugin), builtin("auth", AuthPlugin), *plugins],
        )

    return make


def auth_of(app: NexusApp) -> Auth:
    """The running Auth service."""
    return app.kernel.services.get(AUTH)


async def login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    """POST the OAuth2 password form to /api/auth/token."""
    form = {"grant_type": "password", "username": username, "password": password}
    return await client.post("/api/auth/token", data=form)


async def bearer(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> dict[str, str]:
    """Sign in and return the Authorization header carrying the access token."""
    response = await login(client, username, password)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}

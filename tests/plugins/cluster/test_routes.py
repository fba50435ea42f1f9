"""`/api/cluster`: admins see the instances and steer plugins; others get 401, 403 or 503."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from nexus import Event, Plugin, PluginContext, PluginState
from nexus.http.app import NexusApp
from nexus.plugins.auth import ADMIN_ROLE, AUTH
from nexus.plugins.auth.plugin import AuthPlugin
from nexus.plugins.database import DatabasePlugin
from nexus.testing import serve
from tests.plugins.cluster.conftest import MakeApp, builtin, eventually

#: Cheap argon2id parameters: tests hash in microseconds.
FAST_HASHING = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
PASSWORD = "correct horse battery staple"


class AdminEvents(Plugin):
    """Records every admin.** event."""

    manifest = {"name": "recorder", "version": "1.0", "permissions": ["events:subscribe:admin.**"]}

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.events.subscribe("admin.**", self.record)

    async def record(self, event: Event) -> None:
        self.events.append(event)


def secured_app(make_app: MakeApp, recorder: AdminEvents) -> NexusApp:
    return make_app(
        "a",
        plugins=[builtin("database", DatabasePlugin), builtin("auth", AuthPlugin), recorder],
        config={"plugins": {"auth": {"password_hashing": FAST_HASHING}}},
    )


async def bearer(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    form = {"grant_type": "password", "username": username, "password": PASSWORD}
    response = await client.post("/api/auth/token", data=form)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
async def users() -> Any:
    """Create an admin and a plain user in a running app."""

    async def create(app: NexusApp) -> None:
        auth = app.kernel.services.get(AUTH)
        await auth.create_user("root", PASSWORD, roles=[ADMIN_ROLE])
        await auth.create_user("guest", PASSWORD)

    return create


async def test_admins_disable_and_enable_plugins_across_the_cluster(
    make_app: MakeApp, users: Any
) -> None:
    """An admin's POST is accepted (202), audited as admin.plugin.<op>, and applied."""
    recorder = AdminEvents()
    app = secured_app(make_app, recorder)
    async with serve(app) as client:
        await users(app)
        admin = await bearer(client, "root")
        response = await client.post("/api/cluster/plugins/notes/disable", headers=admin)
        assert response.status_code == 202
        body = response.json()
        assert body["plugin"] == "notes" and body["operation"] == "disable"
        assert (body["desired"]["enabled"], body["desired"]["actor"]) == (False, "root")
        await eventually(lambda: app.kernel.plugins.status("notes").state is PluginState.DISABLED)
        assert (await client.get("/api/notes/notes")).status_code == 404

        desired = await client.get("/api/cluster/plugins", headers=admin)
        assert desired.json()["plugins"]["notes"]["enabled"] is False
        reloaded = await client.post("/api/cluster/plugins/notes/reload", headers=admin)
        assert reloaded.json()["desired"]["reloads"] == 1
        enabled = await client.post("/api/cluster/plugins/notes/enable", headers=admin)
        assert enabled.json()["desired"]["generation"] == 3
        await eventually(lambda: app.kernel.plugins.status("notes").state is PluginState.ACTIVE)
        await eventually(lambda: len(recorder.events) == 3)
    [disabled, _, _] = recorder.events
    assert [event.type for event in recorder.events] == [
        "admin.plugin.disable",
        "admin.plugin.reload",
        "admin.plugin.enable",
    ]
    assert disabled.data == {
        "actor": "root",
        "resource": "plugin:notes",
        "outcome": "success",
        "plugin": "notes",
        "operation": "disable",
        "scope": "cluster",
        "generation": 1,
        "instance": "a",
    }
    assert disabled.correlation_id is not None


async def test_admins_see_every_instance(make_app: MakeApp, users: Any) -> None:
    """GET /instances lists the live instances and what they run."""
    app = secured_app(make_app, AdminEvents())
    async with serve(app) as client:
        await users(app)
        admin = await bearer(client, "root")

        async def listed() -> Any:
            body = (await client.get("/api/cluster/instances", headers=admin)).json()
            states = [i["plugins"]["notes"]["state"] for i in body["instances"]]
            return body if states == ["active"] else None

        body = await eventually(listed)
    assert body["instance_id"] == "a"
    [instance] = body["instances"]
    assert instance["id"] == "a"
    assert instance["plugins"]["auth"]["version"] == "1.0.0"


async def test_mistakes_are_problems(make_app: MakeApp, users: Any) -> None:
    """Unknown plugins are 404 and the cluster plugin itself 409, as problem+json."""
    app = secured_app(make_app, AdminEvents())
    async with serve(app) as client:
        await users(app)
        admin = await bearer(client, "root")
        unknown = await client.post("/api/cluster/plugins/ghost/disable", headers=admin)
        itself = await client.post("/api/cluster/plugins/cluster/disable", headers=admin)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert "No plugin named 'ghost'" in unknown.json()["detail"]
    assert itself.status_code == 409
    assert "cannot disable or reload itself" in itself.json()["detail"]


async def test_others_are_refused(make_app: MakeApp, users: Any) -> None:
    """Anonymous callers get 401 with a Bearer challenge; users without permissions get 403."""
    app = secured_app(make_app, AdminEvents())
    async with serve(app) as client:
        await users(app)
        guest = await bearer(client, "guest")
        anonymous = [
            await client.get("/api/cluster/instances"),
            await client.post("/api/cluster/plugins/notes/disable"),
        ]
        denied = [
            await client.get("/api/cluster/instances", headers=guest),
            await client.get("/api/cluster/plugins", headers=guest),
            await client.post("/api/cluster/plugins/notes/disable", headers=guest),
        ]
        assert app.kernel.plugins.status("notes").state is PluginState.ACTIVE
    assert [r.status_code for r in anonymous] == [401, 401]
    assert all(r.headers["www-authenticate"].startswith("Bearer") for r in anonymous)
    assert [r.status_code for r in denied] == [403, 403, 403]
    assert "'cluster:read'" in denied[0].json()["detail"]
    assert "'plugins:manage'" in denied[2].json()["detail"]


async def test_without_auth_the_routes_are_unavailable(make_app: MakeApp) -> None:
    """With no auth plugin running nobody can be checked, so the routes answer 503."""
    async with serve(make_app("a")) as client:
        listed = await client.get("/api/cluster/instances")
        changed = await client.post("/api/cluster/plugins/notes/disable")
    assert [listed.status_code, changed.status_code] == [503, 503]
    assert "auth plugin is not running" in listed.json()["detail"]

"""`require` and `current_principal` in another plugin's routes; the middleware's effects."""

from __future__ import annotations

import asyncio

from nexus.kernel.correlation import actor
from nexus.plugins.auth import schema
from nexus.testing import create_test_app, serve
from tests.plugins.auth.conftest import (
    PASSWORD,
    AppFactory,
    Notes,
    Recorder,
    auth_of,
    bearer,
)


async def test_missing_permission_is_403_and_published(make_app: AppFactory) -> None:
    """A signed-in user without the permission gets a 403 problem naming it, and it is audited."""
    recorder = Recorder()
    app = make_app(plugins=[Notes(), recorder])
    async with serve(app) as client:
        auth = auth_of(app)
        await auth.set_role("reader", ["notes:read"])
        user = await auth.create_user("bob", PASSWORD, roles=["reader"])
        headers = await bearer(client, "bob")
        assert (await client.get("/api/notes/notes", headers=headers)).status_code == 200
        denied = await client.post("/api/notes/notes", headers=headers)
        assert denied.status_code == 403
        assert denied.headers["content-type"] == "application/problem+json"
        assert (
            denied.json()["detail"]
            == "This needs permission 'notes:write', which 'bob' does not have."
        )
        assert denied.json()["missing_permissions"] == ["notes:write"]
        events = await recorder.wait_for("security.denied")
        assert events[0] | {"credential_id": None} == {
            "actor": "bob",
            "resource": "POST /api/notes/notes",
            "outcome": "denied",
            "permission": "notes:write",
            "missing": ["notes:write"],
            "user_id": user.id,
            "principal_kind": "user",
            "credential_id": None,
        }
        assert (await client.delete("/api/notes/notes/7", headers=headers)).status_code == 403
        events = await recorder.wait_for("security.denied", 2)
        assert events[1]["resource"] == "DELETE /api/notes/notes/{note_id}"


async def test_admin_passes_every_requirement(make_app: AppFactory) -> None:
    """The admin role holds every permission, including ones no role lists."""
    app = make_app(plugins=[Notes()])
    async with serve(app) as client:
        await auth_of(app).create_user("root", PASSWORD, roles=["admin"])
        headers = await bearer(client, "root")
        response = await client.post("/api/notes/notes", headers=headers)
        assert response.json() == {"written_by": "root"}


async def test_anonymous_and_invalid_credentials(make_app: AppFactory) -> None:
    """Open routes serve anonymous callers and bad tokens alike; protected ones answer 401."""
    app = make_app(plugins=[Notes()])
    async with serve(app) as client:
        assert (await client.get("/api/notes/open")).json() == {"actor": None}
        bad = {"Authorization": "Bearer not.a.token"}
        assert (await client.get("/api/notes/open", headers=bad)).status_code == 200
        anonymous = await client.get("/api/notes/notes")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="nexus"'
        refused = await client.get("/api/notes/whoami", headers=bad)
        assert refused.status_code == 401
        assert refused.json()["detail"] == "The access token is malformed."
        both = await client.get(
            "/api/notes/whoami", headers={**bad, "X-API-Key": "nxk_0123456789ab_x"}
        )
        assert "not both" in both.json()["detail"]


async def test_actor_names_the_user_during_the_request(make_app: AppFactory) -> None:
    """The actor context variable is the username inside the request and unset after it."""
    app = make_app(plugins=[Notes()])
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD, roles=["admin"])
        headers = await bearer(client, "ada")
        assert (await client.get("/api/notes/open", headers=headers)).json() == {"actor": "ada"}
        assert actor.get() is None


async def test_without_the_auth_plugin_protected_routes_are_503() -> None:
    """With no auth plugin running, require/current_principal answer 503, open routes work."""
    app = create_test_app(plugins=[Notes()])
    async with serve(app) as client:
        response = await client.get("/api/notes/notes")
        assert response.status_code == 503
        assert "auth plugin is not running" in response.json()["detail"]
        assert (await client.get("/api/notes/whoami")).status_code == 503
        assert (await client.get("/api/notes/open")).status_code == 200


async def test_disabling_auth_at_runtime_makes_protected_routes_503(
    make_app: AppFactory,
) -> None:
    """When the auth plugin is disabled, its middleware goes with it: 503, not 'anonymous'."""
    app = make_app(plugins=[Notes()])
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD, roles=["admin"])
        headers = await bearer(client, "ada")
        assert (await client.get("/api/notes/whoami", headers=headers)).status_code == 200
        await app.kernel.plugins.disable("auth")
        assert (await client.get("/api/notes/whoami", headers=headers)).status_code == 503
        await app.kernel.plugins.enable("auth")
        assert (await client.get("/api/notes/whoami", headers=headers)).status_code == 200


async def test_role_changes_by_another_instance_are_picked_up(make_app: AppFactory) -> None:
    """A role changed in the database by someone else takes effect after the refresh interval."""
    app = make_app(plugins=[Notes()], auth={"role_refresh_interval": 0.01})
    async with serve(app) as client:
        auth = auth_of(app)
        await auth.set_role("reader", ["notes:read"])
        await auth.create_user("bob", PASSWORD, roles=["reader"])
        headers = await bearer(client, "bob")
        assert (await client.post("/api/notes/notes", headers=headers)).status_code == 403
        # Another instance grants notes:write to the role, straight in the shared database.
        async with auth.store.engine.begin() as conn:
            await conn.execute(
                schema.roles.update()
                .where(schema.roles.c.name == "reader")
                .values(permissions=["notes:read", "notes:write"])
            )
        async with asyncio.timeout(5):
            while (await client.post("/api/notes/notes", headers=headers)).status_code != 200:  # noqa: ASYNC110 - roles are re-read by a background task
                await asyncio.sleep(0.01)
        assert auth.roles()["reader"] == frozenset({"notes:read", "notes:write"})

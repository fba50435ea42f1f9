"""The audit plugin through a real app: events become entries, and only admins read them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends

from nexus import Plugin, PluginContext
from nexus.http.app import NexusApp
from nexus.kernel.platform import PLATFORM
from nexus.plugins.audit import AUDIT, AuditEntry
from nexus.plugins.auth import Principal, require
from nexus.plugins.database import DATABASE
from nexus.testing import serve
from tests.plugins.audit.conftest import (
    PASSWORD,
    AppFactory,
    audit_of,
    auth_of,
    bearer,
    eventually,
    login,
)


async def entry_for(app: NexusApp, action: str, request_id: str | None) -> AuditEntry:
    """The entry of `action` caused by the request `request_id`, once it was written."""

    async def find() -> AuditEntry | None:
        for entry in await audit_of(app).query(action=action):
            if entry.request_id == request_id:
                return entry
        return None

    return await eventually(find)


async def test_logins_are_audited_with_actor_outcome_and_request_id(
    make_app: AppFactory,
) -> None:
    """A successful and a failed login each leave an entry naming the request that caused it."""
    app = make_app()
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        assert (await login(client, "ada", request_id="login-ok")).status_code == 200
        assert (await login(client, "ada", "wrong", request_id="login-bad")).status_code == 401
        succeeded = await entry_for(app, "auth.login.succeeded", "login-ok")
        failed = await entry_for(app, "auth.login.failed", "login-bad")
        created = await entry_for(app, "auth.user.created", None)

    assert (succeeded.actor, succeeded.outcome, succeeded.resource) == (
        "ada",
        "success",
        "user:ada",
    )
    assert (failed.actor, failed.outcome, failed.source) == ("ada", "failure", "auth")
    assert failed.details["reason"] == "wrong password"
    assert (created.actor, created.outcome) == ("system", "success")
    assert succeeded.time.tzinfo is dt.UTC
    assert abs(succeeded.time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


async def test_token_revocation_is_audited(make_app: AppFactory) -> None:
    """Logging out revokes the session; the entry names the user and the logout request."""
    app = make_app()
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        tokens = (await login(client, "ada", request_id="login-1")).json()
        # Let the login's entry be written first: auth's logout reads, then writes, in one
        # deferred SQLite transaction, which a commit in between makes fail ("locked").
        await entry_for(app, "auth.login.succeeded", "login-1")
        response = await client.post(
            "/api/auth/logout",
            json={"refresh_token": tokens["refresh_token"]},
            headers={
                "Authorization": f"Bearer {tokens['access_token']}",
                "X-Request-ID": "logout-1",
            },
        )
        assert response.status_code == 204
        revoked = await entry_for(app, "auth.token.revoked", "logout-1")

    assert (revoked.actor, revoked.outcome, revoked.resource) == ("ada", "success", "user:ada")
    assert revoked.details["reason"] == "logout"


async def test_only_admins_read_entries_and_a_denial_is_audited(make_app: AppFactory) -> None:
    """Anonymous callers get 401, non-admins 403 (itself audited as denied), admins the list."""
    app = make_app()
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD, roles=["admin"])
        await auth_of(app).create_user("bob", PASSWORD)
        anonymous = await client.get("/api/audit/entries")
        bob = await bearer(client, "bob")
        denied = await client.get("/api/audit/entries", headers={**bob, "X-Request-ID": "deny-1"})
        entry = await entry_for(app, "security.denied", "deny-1")
        ada = await bearer(client, "ada")
        listed = await client.get("/api/audit/entries", headers=ada)

    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert (entry.actor, entry.outcome) == ("bob", "denied")
    assert entry.details["permission"] == "audit:read"
    assert listed.status_code == 200
    actions = [e["action"] for e in listed.json()["entries"]]
    assert "security.denied" in actions and "auth.login.succeeded" in actions


class Ops(Plugin):
    """Disables plugins through the Platform service, and records that in the audit log."""

    manifest = {
        "name": "ops",
        "version": "1.0",
        "requires": {"audit": ""},
        "permissions": ["services:use:nexus.platform", "services:use:audit"],
    }

    async def setup(self, ctx: PluginContext[Any]) -> None:
        platform, audit = ctx.services.get(PLATFORM), ctx.services.get(AUDIT)
        router = APIRouter()

        @router.post("/plugins/{name}/disable")
        async def disable(
            name: str, principal: Annotated[Principal, Depends(require("plugins:manage"))]
        ) -> dict[str, str]:
            status = await platform.disable(name)
            await audit.record(action="ops.plugin.disabled", resource=f"plugin:{name}")
            return {"state": status.state.value}

        ctx.http.include_router(router)


class Bystander(Plugin):
    manifest = {"name": "bystander", "version": "1.0"}


async def test_plugin_disable_in_a_request_is_audited(make_app: AppFactory) -> None:
    """Disabling a plugin via PLATFORM in a signed-in request: entries name the admin and request."""
    app = make_app(plugins=[Ops(), Bystander()])
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD, roles=["admin"])
        headers = {**await bearer(client, "ada"), "X-Request-ID": "disable-1"}
        response = await client.post("/api/ops/plugins/bystander/disable", headers=headers)
        assert response.json() == {"state": "disabled"}
        kernel = await entry_for(app, "nexus.plugin.disable", "disable-1")
        recorded = await entry_for(app, "ops.plugin.disabled", "disable-1")

    assert (kernel.actor, kernel.outcome, kernel.resource) == ("ada", "success", "plugin:bystander")
    assert (kernel.source, kernel.details["state"]) == ("nexus", "disabled")
    assert (recorded.actor, recorded.source, recorded.resource) == (
        "ada",
        "ops",
        "plugin:bystander",
    )


async def test_entries_are_filtered_and_paged_newest_first(make_app: AppFactory) -> None:
    """Filters combine; pages follow next_before_id without gaps or repeats."""
    app = make_app()
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD, roles=["admin"])
        audit = audit_of(app)
        for n in range(5):
            await audit.record(action=f"notes.note.{'deleted' if n % 2 else 'created'}", actor="cy")
        await audit.record(action="notes.note.created", actor="dee", outcome="denied")
        headers = await bearer(client, "ada")

        async def get(**params: Any) -> dict[str, Any]:
            response = await client.get("/api/audit/entries", params=params, headers=headers)
            assert response.status_code == 200, response.text
            return dict(response.json())

        cy = await get(actor="cy", action="notes.")
        pages: list[list[int]] = []
        cursor: dict[str, Any] = {}
        while True:
            page = await get(actor="cy", limit=2, **cursor)
            pages.append([e["id"] for e in page["entries"]])
            if page["next_before_id"] is None:
                break
            cursor = {"before_id": page["next_before_id"]}
        denied = await get(outcome="denied", action="notes")
        future = await get(since=(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat())
        past = await get(until="2000-01-01T00:00:00")
        bad = await client.get("/api/audit/entries", params={"limit": 0}, headers=headers)

    ids = [e["id"] for e in cy["entries"]]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    assert [i for page in pages for i in page] == ids
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [(e["actor"], e["outcome"]) for e in denied["entries"]] == [("dee", "denied")]
    assert future["entries"] == [] and past["entries"] == []
    assert bad.status_code == 422


async def test_without_auth_reading_entries_is_unavailable(make_app: AppFactory) -> None:
    """With no auth plugin nobody can be checked for audit:read, so the route answers 503."""
    app = make_app(with_auth=False)
    async with serve(app) as client:
        await audit_of(app).record(action="notes.note.created")
        response = await client.get("/api/audit/entries")

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


class Admin(Plugin):
    """Publishes admin.* events."""

    manifest = {"name": "admin", "version": "1.0", "permissions": ["events:publish:admin.**"]}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        self.ctx = ctx


async def test_an_event_that_could_not_be_written_is_kept_for_redelivery(
    make_app: AppFactory,
) -> None:
    """While the table is unusable the handler fails: health says so, and redelivery records it."""
    admin = Admin()
    app = make_app(plugins=[admin], events={"retries": 0})
    async with serve(app) as client:
        database = app.kernel.services.get(DATABASE)
        async with database.engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE audit_entries RENAME TO audit_hidden"))
        event = await admin.ctx.events.publish("admin.settings.changed", {"actor": "ada"})
        platform = app.kernel.services.get(PLATFORM)
        letter = await eventually(
            lambda: _first(d for d in platform.dead_letters.list() if d.event.id == event.id)
        )
        readiness = (await client.get("/readyz")).json()["plugins"]["audit"]
        async with database.engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE audit_hidden RENAME TO audit_entries"))
        await platform.dead_letters.redeliver(letter.id)
        entry = await entry_for(app, "admin.settings.changed", None)

    assert readiness["healthy"] is False
    assert "cannot write audit entries" in readiness["detail"]
    assert (entry.actor, entry.source, entry.outcome) == ("ada", "admin", "success")


async def _first(items: Any) -> Any:
    return next(iter(items), None)


async def test_old_entries_are_pruned_in_the_background(make_app: AppFactory) -> None:
    """Entries older than retention_days are deleted by the pruning task; newer ones stay."""
    app = make_app(audit={"retention_days": 1, "prune_interval": 0.01}, with_auth=False)
    async with serve(app):
        database = app.kernel.services.get(DATABASE)
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        async with database.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO audit_entries (time, actor, action, resource, outcome, source, "
                    "details) VALUES (:time, 'ada', 'old.thing', '', 'success', 'test', '{}')"
                ),
                {"time": old.replace(tzinfo=None)},
            )
        await audit_of(app).record(action="new.thing")

        async def only_new() -> list[str] | None:
            actions = [e.action for e in await audit_of(app).query()]
            return actions if "old.thing" not in actions else None

        assert await eventually(only_new) == ["new.thing"]

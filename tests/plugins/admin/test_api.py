"""The admin JSON API: plugins and their operations, graph, events, dead letters, metrics, audit."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson

from nexus import Event, Plugin, PluginContext, PluginState
from nexus.http.app import NexusApp
from nexus.kernel.platform import PLATFORM
from nexus.kernel.services import ServiceKey
from nexus.plugins.admin import AdminPlugin
from nexus.testing import serve
from tests.plugins.admin.conftest import (
    ORIGIN,
    AppFactory,
    admin_client,
    create_users,
    eventually,
    sign_in,
)


class Broken(Plugin):
    """Fails in setup."""

    manifest = {"name": "broken", "version": "2.0.0"}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        raise ValueError("no configuration for the widget")


class Needy(Plugin):
    """Requires the broken plugin, and a plugin that is not installed (optionally)."""

    manifest = {
        "name": "needy",
        "version": "1.0.0",
        "requires": {"broken": ">=1"},
        "optional": {"ghost": ""},
    }


class Orphan(Plugin):
    """Requires a plugin that is not installed at all."""

    manifest = {"name": "orphan", "version": "1.0.0", "requires": {"phantom": ">=1"}}


class Flaky(Plugin):
    """Fails on the first delivery of each probe.fail event, succeeds on the second."""

    manifest = {
        "name": "flaky",
        "version": "1.0.0",
        "permissions": ["events:subscribe:probe.fail"],
    }

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.events.subscribe("probe.fail", self.handle, retries=0)

    async def handle(self, event: Event) -> None:
        self.attempts[event.id] = self.attempts.get(event.id, 0) + 1
        if self.attempts[event.id] == 1:
            raise RuntimeError("first delivery always fails")


class FakeCluster:
    """A stand-in for the cluster plugin's service."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    async def instances(self) -> list[dict[str, Any]]:
        return [
            {"id": "web-1", "host": "web", "plugins": {"probe": {"state": "active"}}},
            {"id": "web-2", "host": "web", "plugins": {"probe": {"state": "disabled"}}},
        ]

    async def set_enabled(
        self, name: str, enabled: bool, *, actor: str | None = None
    ) -> dict[str, Any]:
        self.calls.append(("enabled" if enabled else "disabled", name, actor))
        return {"plugin": name, "enabled": enabled, "actor": actor}

    async def request_reload(self, name: str, *, actor: str | None = None) -> dict[str, Any]:
        raise ValueError(f"The cluster plugin cannot disable or reload {name!r}.")


class Cluster(Plugin):
    """Provides the `cluster` service."""

    manifest = {"name": "cluster", "version": "0.1.0", "provides": ["cluster"]}

    def __init__(self) -> None:
        self.service = FakeCluster()

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.services.provide(ServiceKey[Any]("cluster"), self.service)


def admin_plugin(app: NexusApp) -> AdminPlugin:
    """The running admin plugin instance."""
    plugin = app.kernel.plugins.plugin("admin")
    assert isinstance(plugin, AdminPlugin)
    return plugin


async def audit_actions(client: httpx.AsyncClient, **filters: str) -> list[dict[str, Any]]:
    """Audit entries through the dashboard's proxy."""
    response = await client.get("/admin/api/audit", params=filters)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_plugins_show_state_health_failures_and_dependencies(make_app: AppFactory) -> None:
    """Rows carry state, version, health, failure stage and reason, blocked reason, deps."""
    app = make_app(extra=(Broken(), Needy()))
    async with serve(app) as client:
        await create_users(app)
        await admin_client(client)
        response = await client.get("/admin/api/plugins")
        rows = {row["name"]: row for row in response.json()["plugins"]}
    broken, needy, probe = rows["broken"], rows["needy"], rows["probe"]
    assert broken["state"] == "failed" and broken["version"] == "2.0.0"
    assert broken["failure"] == {
        "stage": "setup",
        "reason": "ValueError: no configuration for the widget",
    }
    assert broken["health"]["ok"] is False
    assert needy["state"] == "blocked"
    assert "needs 'broken'" in needy["blocked_reason"]
    assert needy["requires"] == {"broken": ">=1"} and needy["optional"] == {"ghost": ""}
    assert broken["dependents"] == ["needy"]
    assert probe["state"] == "active" and probe["health"] == {"ok": True, "detail": ""}
    assert "traceback" not in str(broken)
    assert rows["auth"]["services"] == ["auth"]
    assert rows["admin"]["subscriptions"] == 1
    assert rows["auth"]["protected"] and rows["admin"]["protected"]
    assert rows["probe"]["protected"] is None


async def test_disable_enable_reload_change_the_plugin_and_are_audited(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """Operations take effect (routes 404 while disabled) and audit names the acting admin."""
    _, client = served
    token = await admin_client(client)
    headers = {"X-CSRF-Token": token, "Origin": ORIGIN}
    disabled = await client.post("/admin/api/plugins/probe/disable", headers=headers)
    assert disabled.status_code == 200
    assert disabled.json()["status"]["state"] == "disabled"
    assert disabled.json()["outcome"] == "success"
    assert (await client.get("/api/probe/ping")).status_code == 404
    enabled = await client.post("/admin/api/plugins/probe/enable", headers=headers)
    assert enabled.json()["status"]["state"] == "active"
    assert (await client.get("/api/probe/ping")).status_code == 200
    reloaded = await client.post("/admin/api/plugins/probe/reload", headers=headers)
    assert reloaded.json()["status"]["state"] == "active"

    async def audited() -> bool:
        return len(await audit_actions(client, action="admin.plugin")) == 3

    await eventually(audited, "three admin.plugin entries")
    entries = await audit_actions(client, action="admin.plugin")
    assert [e["action"] for e in entries] == [
        "admin.plugin.reload",
        "admin.plugin.enable",
        "admin.plugin.disable",
    ]
    assert {e["actor"] for e in entries} == {"root"}
    assert {e["resource"] for e in entries} == {"plugin:probe"}
    assert {e["outcome"] for e in entries} == {"success"}
    # The kernel's own lifecycle event names the same actor, from the request's context.
    [kernel_event] = await audit_actions(client, action="nexus.plugin.disable")
    assert kernel_event["actor"] == "root"
    assert kernel_event["request_id"] == entries[-1]["request_id"]


async def test_unknown_plugins_and_operations_are_refused(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """An unknown plugin is a 404 problem; an unknown operation is a 422."""
    _, client = served
    token = await admin_client(client)
    headers = {"X-CSRF-Token": token}
    missing = await client.post("/admin/api/plugins/nope/disable", headers=headers)
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]
    bad = await client.post("/admin/api/plugins/probe/explode", headers=headers)
    assert bad.status_code == 422


async def test_what_the_dashboard_requires_cannot_be_disabled(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """Disabling admin, auth or database from the dashboard is a 409, and is audited as denied."""
    app, client = served
    token = await admin_client(client)
    for name in ("admin", "auth", "database"):
        response = await client.post(
            f"/admin/api/plugins/{name}/disable", headers={"X-CSRF-Token": token}
        )
        assert response.status_code == 409, name
        assert "cannot be disabled from the dashboard" in response.json()["detail"]
        assert app.kernel.plugins.status(name).state is PluginState.ACTIVE

    async def audited() -> bool:
        return len(await audit_actions(client, action="admin.plugin.disable")) == 3

    await eventually(audited, "the denied operations in the audit log")
    outcomes = {e["outcome"] for e in await audit_actions(client, action="admin.plugin.disable")}
    assert outcomes == {"denied"}


async def test_operations_restarting_the_dashboard_run_after_the_response(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """Reloading a plugin the dashboard depends on answers 202 at once; sessions survive it."""
    app, client = served
    token = await admin_client(client)
    before = admin_plugin(app)
    assert before.operations is not None
    response = await client.post("/admin/api/plugins/audit/reload", headers={"X-CSRF-Token": token})
    assert response.status_code == 202
    assert response.json()["accepted"] is True
    await before.operations.drain()
    assert app.kernel.plugins.status("audit").state is PluginState.ACTIVE
    assert app.kernel.plugins.status("admin").state is PluginState.ACTIVE
    assert admin_plugin(app) is not before  # restarted with its dependency
    session = await client.get("/admin/api/session")  # sessions live in the database
    assert session.status_code == 200 and session.json()["csrf_token"] == token


async def test_the_graph_has_layers_typed_edges_and_marks_trouble(make_app: AppFactory) -> None:
    """Nodes are layered by start order; failed, blocked and missing plugins are marked."""
    app = make_app(extra=(Broken(), Needy(), Orphan()))
    async with serve(app) as client:
        await create_users(app)
        await admin_client(client)
        graph = (await client.get("/admin/api/graph")).json()
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert nodes["database"]["layer"] == 0
    assert nodes["audit"]["layer"] == 1  # requires database
    assert nodes["auth"]["layer"] == 2  # requires database, optionally uses audit
    assert nodes["admin"]["layer"] > nodes["auth"]["layer"]
    assert graph["order"].index("database") < graph["order"].index("auth")
    assert graph["order"].index("auth") < graph["order"].index("admin")
    assert nodes["broken"]["is_troubled"] and nodes["broken"]["state"] == "failed"
    assert nodes["needy"]["is_troubled"] and nodes["needy"]["state"] == "blocked"
    assert nodes["phantom"] == {
        "id": "phantom",
        "state": "missing",
        "version": None,
        "enabled": False,
        "layer": 0,
        "order": None,
        "reason": "not installed",
        "is_troubled": True,
    }
    assert "ghost" not in nodes  # an absent optional plugin is not drawn
    edges = {(e["source"], e["target"]): e["kind"] for e in graph["edges"]}
    assert edges[("database", "auth")] == "requires"
    assert edges[("audit", "admin")] == "optional"
    assert edges[("phantom", "orphan")] == "requires"


async def test_recent_events_filtered_by_pattern(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """The ring of recent events is filtered by topic pattern; a bad pattern is a 422."""
    app, client = served
    await admin_client(client)
    for topic in ("alpha", "beta.one", "beta.two"):
        await client.post(f"/api/probe/publish/{topic}")
    feed = admin_plugin(app).feed
    assert feed is not None
    await eventually(lambda: len(feed.recent("probe.**")) == 3, "three probe events")
    response = await client.get("/admin/api/events", params={"pattern": "probe.beta.*"})
    events = response.json()["events"]
    assert [e["type"] for e in events] == ["probe.beta.one", "probe.beta.two"]
    assert events[0]["source"] == "probe" and events[0]["data"] == {"topic": "beta.one"}
    assert events[0]["correlation_id"]  # the request that published it
    bad = await client.get("/admin/api/events", params={"pattern": "probe..x"})
    assert bad.status_code == 422


async def test_live_stream_sends_events_and_heartbeats_uncompressed(
    make_app: AppFactory,
) -> None:
    """The SSE stream is text/event-stream, never gzipped, with heartbeats and live events."""
    app = make_app(admin={"stream_lifetime": 0.3, "stream_heartbeat": 0.02})
    async with serve(app) as client:
        await create_users(app)
        await admin_client(client)
        feed = admin_plugin(app).feed
        assert feed is not None
        stream = asyncio.create_task(
            client.get(
                "/admin/api/events/stream",
                params={"pattern": "probe.live.*"},
                headers={"Accept-Encoding": "gzip"},
            )
        )
        await eventually(lambda: feed.stream_count == 1, "the stream to open")
        await client.post("/api/probe/publish/other")
        await client.post("/api/probe/publish/live.one")
        response = await stream
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in response.headers
    body = response.text
    assert body.startswith("retry: 2000\n")
    assert ": heartbeat\n\n" in body
    assert "probe.other" not in body
    [message] = [block for block in body.split("\n\n") if block.startswith("id: ")]
    lines = dict(line.split(": ", 1) for line in message.splitlines())
    assert lines["event"] == "event"
    assert orjson.loads(lines["data"])["type"] == "probe.live.one"
    assert feed.stream_count == 0  # the stream let go of its queue when it ended


async def test_a_reconnecting_stream_resumes_after_its_last_event(make_app: AppFactory) -> None:
    """With Last-Event-ID the stream replays only the kept events that came after it."""
    app = make_app(admin={"stream_lifetime": 0.1, "stream_heartbeat": 0.1})
    async with serve(app) as client:
        await create_users(app)
        await admin_client(client)
        feed = admin_plugin(app).feed
        assert feed is not None
        for topic in ("one", "two", "three"):
            await client.post(f"/api/probe/publish/{topic}")
        await eventually(lambda: len(feed.recent("probe.*")) == 3, "three events")
        first = feed.recent("probe.*")[0]
        response = await client.get(
            "/admin/api/events/stream",
            params={"pattern": "probe.*"},
            headers={"Last-Event-ID": first.id},
        )
    assert "probe.one" not in response.text
    assert "probe.two" in response.text and "probe.three" in response.text


async def test_too_many_streams_are_refused(make_app: AppFactory) -> None:
    """Past max_streams, a new stream gets a 503 problem with Retry-After."""
    app = make_app(admin={"max_streams": 1, "stream_lifetime": 0.2})
    async with serve(app) as client:
        await create_users(app)
        await admin_client(client)
        feed = admin_plugin(app).feed
        assert feed is not None
        first = asyncio.create_task(client.get("/admin/api/events/stream"))
        await eventually(lambda: feed.stream_count == 1, "the first stream")
        second = await client.get("/admin/api/events/stream")
        assert second.status_code == 503 and second.headers["retry-after"] == "5"
        assert (await first).status_code == 200


async def test_dead_letters_are_listed_redelivered_and_discarded(make_app: AppFactory) -> None:
    """A failed delivery shows up; redelivering it succeeds; discarding removes one."""
    flaky = Flaky()
    app = make_app(extra=(flaky,))
    async with serve(app) as client:
        await create_users(app)
        token = await admin_client(client)
        headers = {"X-CSRF-Token": token}
        platform = app.kernel.services.get(PLATFORM)
        await client.post("/api/probe/publish/fail")
        await client.post("/api/probe/publish/fail")
        await eventually(lambda: len(platform.dead_letters) == 2, "two dead letters")
        listed = (await client.get("/admin/api/dead-letters")).json()["dead_letters"]
        assert [letter["event"]["type"] for letter in listed] == ["probe.fail", "probe.fail"]
        assert listed[0]["error"] == "RuntimeError: first delivery always fails"
        assert listed[0]["subscriber"].startswith("flaky:")
        redelivered = await client.post(
            f"/admin/api/dead-letters/{listed[0]['id']}/redeliver", headers=headers
        )
        assert redelivered.json() == {
            "id": listed[0]["id"],
            "outcome": "success",
            "delivered": 1,
            "failed": 0,
            "dropped": 0,
        }
        discarded = await client.delete(
            f"/admin/api/dead-letters/{listed[1]['id']}", headers=headers
        )
        assert discarded.status_code == 200
        assert (await client.get("/admin/api/dead-letters")).json()["dead_letters"] == []
        again = await client.delete(f"/admin/api/dead-letters/{listed[1]['id']}", headers=headers)
        assert again.status_code == 404

        async def audited() -> bool:
            return len(await audit_actions(client, action="admin.dead_letter")) == 2

        await eventually(audited, "the dead letter actions in the audit log")


async def test_metrics_count_requests_latency_errors_and_events(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """A sample holds requests/s and p95 per plugin, the error rate and event rates."""
    app, client = served
    await admin_client(client)
    sampler = admin_plugin(app).sampler
    assert sampler is not None
    sampler.sample()  # start from a fresh window
    for _ in range(3):
        assert (await client.get("/api/probe/ping")).status_code == 200
    assert (await client.get("/api/probe/boom")).status_code == 500
    await client.post("/api/probe/publish/counted")
    sampler.sample()
    data = (await client.get("/admin/api/metrics", params={"seconds": 1})).json()
    assert data["interval"] == 1.0 and len(data["time"]) == 1
    assert "probe" in data["plugins"]
    assert data["requests_per_second"]["probe"][0] > 0
    assert data["errors_per_second"]["probe"][0] > 0
    assert data["p95_ms"]["probe"][0] is not None and data["p95_ms"]["probe"][0] > 0
    assert 0 < data["error_rate"][0] < 1
    assert data["events_per_second"]["published"][0] > 0


async def test_configuration_is_shown_with_secrets_redacted(make_app: AppFactory) -> None:
    """The configuration view never shows a secret's value."""
    secret = "c2VjcmV0LXNpZ25pbmcta2V5LXRoYXQtaXMtbG9uZy1lbm91Z2g="
    app = make_app()
    app.kernel.config.plugins["auth"]["signing_key"] = secret
    async with serve(app) as client:
        await create_users(app)
        await admin_client(client)
        response = await client.get("/admin/api/config")
    assert response.status_code == 200
    assert secret not in response.text
    assert response.json()["config"]["plugins"]["auth"]["signing_key"] != secret


async def test_audit_log_is_filtered_through_the_audit_service(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """Filters reach the audit service: actor, action prefix, outcome and limit."""
    _, client = served
    assert (await sign_in(client, "viewer")).status_code == 403  # audited as denied
    await admin_client(client)

    async def logged_in() -> bool:
        return len(await audit_actions(client, action="admin.login")) == 2

    await eventually(logged_in, "the admin.login entries")
    [login] = await audit_actions(client, action="admin.login", actor="root", outcome="success")
    assert login["resource"] == "admin:dashboard"
    [denied] = await audit_actions(client, action="admin.log", outcome="denied")
    assert denied["actor"] == "viewer"
    assert (
        await audit_actions(client, action="admin.login", actor="viewer", outcome="success") == []
    )
    limited = (await client.get("/admin/api/audit", params={"limit": 1})).json()
    assert len(limited["entries"]) == 1 and limited["next_before_id"] is not None


async def test_without_audit_the_section_says_so(make_app: AppFactory) -> None:
    """When the audit plugin is not running, the feature is off and the proxy answers 503."""
    app = make_app(without=("audit",))
    async with serve(app) as client:
        await create_users(app)
        await admin_client(client)
        session = (await client.get("/admin/api/session")).json()
        assert session["features"] == {"audit": False, "cluster": False, "monitoring": True}
        response = await client.get("/admin/api/audit")
        assert response.status_code == 503


async def test_cluster_instances_and_operations_go_through_the_cluster(
    make_app: AppFactory,
) -> None:
    """With a cluster service, instances are listed and operations are sent to it."""
    cluster = Cluster()
    app = make_app(extra=(cluster,))
    async with serve(app) as client:
        await create_users(app)
        token = await admin_client(client)
        session = (await client.get("/admin/api/session")).json()
        assert session["features"]["cluster"] is True
        instances = (await client.get("/admin/api/cluster")).json()["instances"]
        assert [i["id"] for i in instances] == ["web-1", "web-2"]
        response = await client.post(
            "/admin/api/plugins/probe/disable", headers={"X-CSRF-Token": token}
        )
        assert response.status_code == 202
        assert response.json()["via"] == "cluster"
        assert response.json()["desired"] == {"plugin": "probe", "enabled": False, "actor": "root"}
        assert cluster.service.calls == [("disabled", "probe", "root")]
        # The local plugin changes when the cluster's converger applies the wish, not here.
        assert app.kernel.plugins.status("probe").state is PluginState.ACTIVE
        refused = await client.post(
            "/admin/api/plugins/probe/reload", headers={"X-CSRF-Token": token}
        )
        assert refused.status_code == 409
        assert "cannot disable or reload 'probe'" in refused.json()["detail"]


async def test_without_a_cluster_there_is_no_cluster_section(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """No cluster plugin: the feature is off and /cluster is a 404 problem."""
    _, client = served
    await admin_client(client)
    assert (await client.get("/admin/api/session")).json()["features"]["cluster"] is False
    assert (await client.get("/admin/api/cluster")).status_code == 404


async def test_non_admin_knocking_is_audited(served: tuple[NexusApp, httpx.AsyncClient]) -> None:
    """A non-admin's attempt publishes admin.access.denied with who and what."""
    app, client = served
    from tests.plugins.admin.test_access import bearer

    await client.get("/admin/api/plugins", headers=await bearer(app, "viewer"))
    await admin_client(client)

    async def audited() -> bool:
        return len(await audit_actions(client, action="admin.access.denied")) == 1

    await eventually(audited, "admin.access.denied")
    [entry] = await audit_actions(client, action="admin.access.denied")
    assert entry["actor"] == "viewer" and entry["outcome"] == "denied"
    assert entry["resource"] == "GET /admin/api/plugins"

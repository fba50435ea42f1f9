"""Several instances sharing Redis converge on the desired plugin set and report it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from nexus import Plugin, PluginContext, PluginNotFoundError, PluginState
from nexus.http.app import NexusApp
from nexus.plugins.cluster import ClusterControl, ProtectedPluginError
from nexus.testing import serve
from nexus.testing.servers import RedisServer
from tests.plugins.cluster.conftest import MakeApp, Notes, control_of, eventually


def state(app: NexusApp, name: str = "notes") -> PluginState:
    return app.kernel.plugins.status(name).state


async def ids_are(control: ClusterControl, expected: list[str]) -> bool:
    return [report.id for report in await control.instances()] == expected


async def test_a_change_through_one_instance_reaches_every_instance(make_app: MakeApp) -> None:
    """Disabling through A disables on B and C (routes 404); enabling brings them all back."""
    apps = [make_app(name) for name in ("a", "b", "c")]
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(serve(app)) for app in apps]
        assert [(await c.get("/api/notes/notes")).status_code for c in clients] == [200] * 3

        desired = await control_of(apps[0]).set_enabled("notes", False, actor="ada")
        assert (desired.enabled, desired.generation, desired.actor) == (False, 1, "ada")
        await eventually(lambda: all(state(app) is PluginState.DISABLED for app in apps))
        assert [(await c.get("/api/notes/notes")).status_code for c in clients] == [404] * 3

        await control_of(apps[1]).set_enabled("notes", True)
        await eventually(lambda: all(state(app) is PluginState.ACTIVE for app in apps))
        assert [(await c.get("/api/notes/notes")).status_code for c in clients] == [200] * 3


async def test_every_instance_reports_what_it_runs(make_app: MakeApp) -> None:
    """instances() lists each live instance with its plugins' states, versions, generations."""
    apps = [make_app(name) for name in ("a", "b", "c")]
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(serve(app))
        control = control_of(apps[2])
        await control.set_enabled("notes", False)

        async def all_report_disabled() -> bool:
            reports = await control.instances()
            return [r.plugins["notes"].state for r in reports] == ["disabled"] * 3

        await eventually(all_report_disabled)
        reports = await control.instances()
    assert [r.id for r in reports] == ["a", "b", "c"]
    for report in reports:
        notes = report.plugins["notes"]
        assert (notes.enabled, notes.version, notes.generation, notes.problem) == (
            False,
            "1.2.0",
            1,
            None,
        )
        assert report.plugins["cluster"].state == "active"
        assert report.heartbeat_at >= report.started_at
        assert report.pid > 0 and report.host


async def test_a_stopped_instance_withdraws_its_report(make_app: MakeApp) -> None:
    """An instance that shuts down disappears from the reports at once."""
    first, second = make_app("a"), make_app("b")
    async with serve(first):
        control = control_of(first)
        async with serve(second):
            await eventually(lambda: ids_are(control, ["a", "b"]))
        assert await ids_are(control, ["a"])


async def test_a_killed_instance_disappears_after_its_ttl(
    make_app: MakeApp, redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """An instance process killed with SIGKILL is listed until its report's TTL runs out."""
    code = textwrap.dedent(
        f"""
        import asyncio, json
        from pathlib import Path
        from nexus.kernel import inline_plugin
        from nexus.plugins.cluster import ClusterPlugin
        from nexus.testing import create_test_app, serve

        manifest = json.loads(Path({str(Path(__file__).parents[3])!r}, "src/nexus/plugins/cluster/manifest.json").read_text())
        settings = {{"redis_url": {redis_server.url!r}, "key_prefix": {prefix!r},
                    "instance_id": "doomed", "heartbeat_interval": 0.1, "report_ttl": 0.5}}
        app = create_test_app(plugins=[inline_plugin(manifest, ClusterPlugin)],
                              config={{"data_dir": {str(tmp_path / "doomed")!r},
                                      "plugins": {{"cluster": settings}}}})

        async def main():
            async with serve(app):
                print("ready", flush=True)
                await asyncio.Event().wait()

        asyncio.run(main())
        """
    )
    survivor = make_app("survivor")
    async with serve(survivor):
        control = control_of(survivor)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert child.stdout is not None
            assert await asyncio.wait_for(child.stdout.readline(), 30) == b"ready\n"
            await eventually(lambda: ids_are(control, ["doomed", "survivor"]))
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        redis = Redis.from_url(redis_server.url)
        try:
            assert 0 < await redis.pttl(f"{prefix}:instance:doomed") <= 500
        finally:
            await redis.aclose()
        await eventually(lambda: ids_are(control, ["survivor"]))


async def test_instances_converge_without_notices(
    make_app: MakeApp, redis_server: RedisServer, prefix: str
) -> None:
    """A desired state written without a notice is still applied by the periodic pass."""
    apps = [make_app(name) for name in ("a", "b")]
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(serve(app))
        redis = Redis.from_url(redis_server.url)
        try:
            await redis.hset(f"{prefix}:desired", "notes", json.dumps({"enabled": False}))
        finally:
            await redis.aclose()
        await eventually(lambda: all(state(app) is PluginState.DISABLED for app in apps))


async def test_local_changes_are_brought_back_in_line(make_app: MakeApp) -> None:
    """A plugin enabled by hand on one instance is disabled again if the cluster wants it off."""
    app = make_app("a")
    async with serve(app):
        await control_of(app).set_enabled("notes", False)
        await eventually(lambda: state(app) is PluginState.DISABLED)
        await app.kernel.plugins.enable("notes")
        assert state(app) is PluginState.ACTIVE
        await eventually(lambda: state(app) is PluginState.DISABLED)


class CountingNotes(Notes):
    """Notes that counts its setups (a reload sets it up again)."""

    def __init__(self, setups: list[str], instance: str) -> None:
        self.setups, self.instance = setups, instance

    async def setup(self, ctx: PluginContext[Any]) -> None:
        self.setups.append(self.instance)
        await super().setup(ctx)


async def test_a_reload_request_reloads_each_instance_once(make_app: MakeApp) -> None:
    """Each running instance reloads once per request; one started later does not reload."""
    setups: list[str] = []

    def make(instance: str) -> NexusApp:
        return make_app(instance, notes=CountingNotes(setups, instance))

    first, second = make("a"), make("b")
    async with serve(first), serve(second):
        control = control_of(first)
        desired = await control.request_reload("notes")
        assert (desired.reloads, desired.generation, desired.enabled) == (1, 1, None)
        await eventually(lambda: sorted(setups) == ["a", "a", "b", "b"])
        async with serve(make("c")):
            await control.set_enabled("notes", True)  # a change that asks for no reload

            async def all_applied() -> bool:
                reports = await control.instances()
                return [r.plugins["notes"].generation for r in reports] == [2, 2, 2]

            await eventually(all_applied)
    assert sorted(setups) == ["a", "a", "b", "b", "c"]


async def test_instances_running_another_version_say_so(make_app: MakeApp) -> None:
    """An instance whose plugin version differs from the wanted one reports the difference."""
    app = make_app("a")
    async with serve(app):
        control = control_of(app)
        await control.request_reload("notes", version="2.0.0")

        async def mismatch() -> str | None:
            reports = await control.instances()
            return reports[0].plugins["notes"].problem if reports else None

        problem = await eventually(mismatch)
    assert problem == "runs version 1.2.0, the cluster wants 2.0.0"


async def test_the_cluster_plugin_never_stops_itself_or_what_it_needs(
    make_app: MakeApp, redis_server: RedisServer, prefix: str
) -> None:
    """Disabling or reloading the cluster plugin or a plugin it uses is refused, and ignored."""

    class Needed(Plugin):
        manifest = {"name": "needed", "version": "1.0"}

    app = make_app("a", plugins=[Needed()], manifest={"optional": {"needed": ""}})
    async with serve(app):
        control = control_of(app)
        with pytest.raises(ProtectedPluginError, match="cannot disable or reload itself"):
            await control.set_enabled("cluster", False)
        with pytest.raises(ProtectedPluginError, match="'needed', which it depends on"):
            await control.request_reload("needed")
        with pytest.raises(PluginNotFoundError, match="No plugin named 'ghost'"):
            await control.set_enabled("ghost", False)
        redis = Redis.from_url(redis_server.url)
        try:  # written behind the service's back: reported, never acted on
            await redis.hset(f"{prefix}:desired", "needed", json.dumps({"enabled": False}))
            await redis.publish(f"{prefix}:changes", "needed")
        finally:
            await redis.aclose()

        async def refusal() -> str | None:
            reports = await control.instances()
            return reports[0].plugins["needed"].problem if reports else None

        problem = await eventually(refusal)
        assert state(app, "needed") is PluginState.ACTIVE
        assert state(app, "cluster") is PluginState.ACTIVE
    assert "does not disable or reload it" in problem

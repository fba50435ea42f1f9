"""The cluster plugin through Redis outages, hand-written entries and withdrawn wishes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from redis.asyncio import Redis

from nexus import PluginState
from nexus.plugins.cluster import CLUSTER, ClusterPlugin
from nexus.testing import create_test_app, serve
from nexus.testing.servers import RedisServer, free_port, start_redis
from tests.plugins.cluster.conftest import MakeApp, Notes, builtin, control_of, eventually


async def test_an_instance_started_without_redis_catches_up_when_it_comes(
    make_app: MakeApp, prefix: str
) -> None:
    """Without Redis the instance runs as configured and is unhealthy; then it converges."""
    port = free_port()
    slow = {"redis_url": f"redis://127.0.0.1:{port}/0", "reconcile_interval": 600}
    app = make_app("a", cluster={**slow, "timeout": 0.2})
    async with serve(app) as client:
        assert app.kernel.plugins.status("cluster").state is PluginState.ACTIVE
        health = (await app.kernel.plugins.health())["cluster"]
        assert not health.ok
        assert f"The cluster state at redis://127.0.0.1:{port}/0 is unavailable" in health.detail
        assert (await client.get("/api/notes/notes")).status_code == 200
        server = start_redis(port)
        try:

            async def healthy() -> bool:
                return (await app.kernel.plugins.health())["cluster"].ok

            await eventually(healthy)
            other = make_app("b", cluster=slow)
            async with serve(other):
                await control_of(other).set_enabled("notes", False)
                # The long reconcile interval leaves only the change notice to carry it.
                await eventually(
                    lambda: app.kernel.plugins.status("notes").state is PluginState.DISABLED
                )
        finally:
            server.stop()


async def test_a_malformed_entry_is_skipped_and_the_rest_applied(
    make_app: MakeApp,
    redis_server: RedisServer,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An entry that is not a desired state is logged and ignored; valid ones still apply."""
    redis = Redis.from_url(redis_server.url)
    try:
        await redis.hset(f"{prefix}:desired", "ghost", "{not json")
        await redis.hset(f"{prefix}:desired", "notes", json.dumps({"enabled": False}))
    finally:
        await redis.aclose()
    app = make_app("a")
    with caplog.at_level(logging.WARNING, logger="nexus.plugins.cluster"):
        async with serve(app):
            await eventually(
                lambda: app.kernel.plugins.status("notes").state is PluginState.DISABLED
            )
            assert set(await control_of(app).desired()) == {"notes"}
    assert "Ignoring the desired state of plugin 'ghost' in Redis: not JSON" in caplog.text


async def test_forgetting_a_wish_leaves_instances_as_they_are(make_app: MakeApp) -> None:
    """forget() drops the cluster's wish; instances keep running what they run."""
    app = make_app("a")
    async with serve(app):
        control = control_of(app)
        await control.set_enabled("notes", False)
        await eventually(lambda: app.kernel.plugins.status("notes").state is PluginState.DISABLED)
        assert await control.forget("notes") is True
        assert await control.forget("notes") is False
        assert await control.desired() == {}
        await app.kernel.plugins.enable("notes")  # no longer overruled by the cluster

        async def reported() -> bool:
            reports = await control.instances()
            return bool(reports) and reports[0].plugins["notes"].generation is None

        await eventually(reported)
        assert app.kernel.plugins.status("notes").state is PluginState.ACTIVE


async def test_without_a_redis_url_the_plugin_stays_idle(tmp_path: Path) -> None:
    """Unconfigured, the plugin is active and healthy but offers no cluster control."""
    app = create_test_app(
        plugins=[builtin("cluster", ClusterPlugin), Notes()], config={"data_dir": str(tmp_path)}
    )
    async with serve(app) as client:
        health = (await app.kernel.plugins.health())["cluster"]
        assert app.kernel.plugins.status("cluster").state is PluginState.ACTIVE
        assert not app.kernel.services.has(CLUSTER)
        assert (await client.get("/api/cluster/instances")).status_code == 404
    assert health.ok and health.detail == "idle: set plugins.cluster.redis_url to join a cluster"

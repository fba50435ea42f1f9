"""The scheduler plugin in real kernels: jobs owned by their plugin, one run per due time."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nexus import Kernel, Plugin, PluginContext, PluginState
from nexus.kernel import PluginSource, inline_plugin
from nexus.plugins.scheduler import SCHEDULER, SchedulerPlugin, current_run
from nexus.testing import create_test_kernel
from nexus.testing.servers import RedisServer, free_port

MANIFEST = Path(__file__).parents[3] / "src/nexus/plugins/scheduler/manifest.json"


def scheduler_plugin() -> PluginSource:
    """The built-in scheduler with its real manifest, served inline."""
    return inline_plugin(json.loads(MANIFEST.read_text()), SchedulerPlugin)


class Reports(Plugin):
    """A plugin with one job that records which instance ran which due time."""

    def __init__(self, runs: list[tuple[str, dt.datetime]], interval: float) -> None:
        self.manifest = {
            "name": "reports",
            "version": "1.0",
            "requires": {"scheduler": ">=1.0"},
            "permissions": ["services:use:scheduler"],
        }
        self.runs, self.interval = runs, interval

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.services.get(SCHEDULER).every(self.interval, self.sync, name="sync")

    async def sync(self) -> None:
        run = current_run()
        assert run is not None
        self.runs.append((run.instance_id, run.due))


def make_kernel(
    runs: list[tuple[str, dt.datetime]], *, interval: float = 0.05, **settings: Any
) -> Kernel:
    return create_test_kernel(
        plugins=[scheduler_plugin(), Reports(runs, interval)],
        config={"plugins": {"scheduler": settings}},
    )


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - jobs run in the scheduler's tasks
            await asyncio.sleep(0.005)


def jobs_of(kernel: Kernel) -> list[str]:
    plugin = kernel.plugins.plugin("scheduler")
    assert isinstance(plugin, SchedulerPlugin) and plugin.runner is not None
    return [f"{job.owner}:{job.name}" for job in plugin.runner.jobs()]


async def test_jobs_stop_with_their_plugin_and_return_with_it() -> None:
    """Disabling the owning plugin removes its job; enabling it schedules it afresh."""
    runs: list[tuple[str, dt.datetime]] = []
    async with make_kernel(runs, instance_id="solo") as kernel:
        await wait_until(lambda: len(runs) >= 2)
        assert jobs_of(kernel) == ["reports:sync"]
        await kernel.plugins.disable("reports")
        assert jobs_of(kernel) == []
        stopped_at = len(runs)
        await kernel.plugins.enable("reports")
        assert kernel.plugins.status("reports").state is PluginState.ACTIVE
        await wait_until(lambda: len(runs) >= stopped_at + 2)
    assert {instance for instance, _ in runs} == {"solo"}


async def test_two_instances_share_each_run_and_survive_one_stopping(
    redis_server: RedisServer,
) -> None:
    """Two kernels sharing Redis run each due time once; after one stops the other runs all."""
    runs: list[tuple[str, dt.datetime]] = []
    settings = {"redis_url": redis_server.url, "key_prefix": f"test:{uuid.uuid4().hex}"}
    survivor = make_kernel(runs, instance_id="b", **settings)
    async with survivor:
        async with make_kernel(runs, instance_id="a", **settings):
            await wait_until(lambda: len(runs) >= 6)
        stopped_at = len(runs)
        await wait_until(lambda: len(runs) >= stopped_at + 3)
    dues = [due for _, due in runs]
    assert len(dues) == len(set(dues))
    assert dues == sorted(dues)
    assert {instance for instance, _ in runs[stopped_at:]} == {"b"}


async def test_unreachable_redis_makes_the_plugin_unhealthy_not_failed() -> None:
    """Without Redis the scheduler still starts, and its health says runs are skipped."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with make_kernel([], redis_url=url, timeout=0.2) as kernel:
        assert kernel.plugins.status("scheduler").state is PluginState.ACTIVE
        health = (await kernel.plugins.health())["scheduler"]
    assert not health.ok
    assert f"The scheduler's run locks at {url} cannot be taken" in health.detail


async def test_a_bad_redis_url_is_a_config_error() -> None:
    """redis_url must be a Redis URL; the plugin fails at the config stage saying so."""
    async with make_kernel([], redis_url="http://127.0.0.1:6379") as kernel:
        status = kernel.plugins.status("scheduler")
    assert status.state is PluginState.FAILED
    assert status.failure is not None and status.failure.stage == "config"
    assert "plugins.scheduler.redis_url" in status.failure.reason
    assert "must start with redis://, rediss:// or unix://" in status.failure.reason


def test_the_redis_extra_is_named_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, a Redis run lock says which extra to install."""
    import sys

    from nexus.plugins.scheduler import RedisRunLock

    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'nexus-platform\[redis\]'"):
        RedisRunLock("redis://127.0.0.1:6379/0", instance_id="a")

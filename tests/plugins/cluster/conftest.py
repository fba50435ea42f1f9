"""Applications with the cluster plugin sharing one real Redis, and a plugin to steer."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter

from nexus import Plugin, PluginContext
from nexus.http.app import NexusApp
from nexus.kernel import PluginSource, inline_plugin
from nexus.plugins.cluster import CLUSTER, ClusterControl, ClusterPlugin
from nexus.testing import create_test_app
from nexus.testing.servers import RedisServer

PLUGINS = Path(__file__).parents[3] / "src" / "nexus" / "plugins"


def builtin(name: str, factory: Callable[[], Plugin], **manifest: Any) -> PluginSource:
    """A built-in plugin with its real manifest.json (+ `manifest`), served inline."""
    found = json.loads((PLUGINS / name / "manifest.json").read_text())
    return inline_plugin({**found, **manifest}, factory)


class Notes(Plugin):
    """A plugin with one route, to switch on and off across the cluster."""

    manifest = {"name": "notes", "version": "1.2.0"}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.get("/notes")
        async def notes() -> dict[str, list[str]]:
            return {"notes": []}

        ctx.http.include_router(router)


async def eventually(check: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    """Poll `check` (sync or async) until it returns a truthy value; fail after `timeout` s."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.01)


def control_of(app: NexusApp) -> ClusterControl:
    """The running CLUSTER service of an app."""
    return app.kernel.services.get(CLUSTER)


@pytest.fixture
def prefix() -> str:
    """Redis keys of this test's own."""
    return f"test:{uuid.uuid4().hex}"


MakeApp = Callable[..., NexusApp]


@pytest.fixture
def make_app(redis_server: RedisServer, prefix: str, tmp_path: Path) -> MakeApp:
    """An app with the cluster plugin (+ notes, + `plugins`) as instance `instance_id`."""

    def make(
        instance_id: str,
        *,
        plugins: Sequence[PluginSource | Plugin] = (),
        cluster: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        notes: Plugin | None = None,
        manifest: Mapping[str, Any] | None = None,
    ) -> NexusApp:
        settings = {
            "redis_url": redis_server.url,
            "key_prefix": prefix,
            "instance_id": instance_id,
            "heartbeat_interval": 0.1,
            **(cluster or {}),
        }
        document: dict[str, Any] = {"data_dir": str(tmp_path / instance_id), **(config or {})}
        document.setdefault("plugins", {})["cluster"] = settings
        cluster_plugin = builtin("cluster", ClusterPlugin, **(manifest or {}))
        return create_test_app(
            plugins=[cluster_plugin, notes or Notes(), *plugins], config=document
        )

    return make

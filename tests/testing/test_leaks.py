"""assert_unloads_cleanly passes a plugin that cleans up, and names what a leaky one leaves."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from nexus import Plugin
from nexus.kernel import loader
from nexus.testing import assert_unloads_cleanly, create_test_app, create_test_kernel, serve
from tests.conftest import PluginWriter

TIDY = """
import asyncio
from fastapi import APIRouter
from pydantic import BaseModel
from nexus import Plugin, ServiceKey

class Item(BaseModel):
    text: str

class Main(Plugin):
    async def setup(self, ctx):
        router = APIRouter()

        @router.post("/items")
        async def create(item: Item) -> Item:
            return item

        ctx.http.include_router(router)
        ctx.events.subscribe("tick.*", self.on_tick)
        ctx.services.provide(ServiceKey("tidy"), self)
        ctx.tasks.spawn(self.forever)

    async def forever(self):
        while True:
            await asyncio.sleep(3600)

    async def on_tick(self, event):
        pass
"""

STASHED = """
import leak_registry
from nexus import Plugin

class Main(Plugin):
    async def setup(self, ctx):
        leak_registry.KEEP.append(self)
"""

UNTRACKED_TASK = """
import asyncio
from nexus import Plugin

class Main(Plugin):
    async def setup(self, ctx):
        self.task = asyncio.get_running_loop().create_task(self.poll())

    async def poll(self):
        while True:
            await asyncio.sleep(3600)
"""

ONCE_ONLY = """
from pathlib import Path
from nexus import Plugin

class Main(Plugin):
    async def setup(self, ctx):
        marker = Path(__file__).with_name("started")
        if marker.exists():
            raise RuntimeError("cannot start twice")
        marker.write_text("yes")
"""


@pytest.fixture(autouse=True)
def forget_plugin_modules() -> Iterator[None]:
    """Each test's directory plugins are imported afresh."""
    yield
    for name in {m.split(".")[1] for m in list(sys.modules) if m.startswith(f"{loader.PACKAGE}.")}:
        loader.release_directory(name)


@pytest.fixture
def leak_registry(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A module where a leaky plugin stashes its instance."""
    module = types.ModuleType("leak_registry")
    module.KEEP = []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "leak_registry", module)
    return module


async def test_a_tidy_plugin_unloads_cleanly_and_stays_served(plugins: PluginWriter) -> None:
    """Routes, models, a subscription, a service and a task are all released; it ends active."""
    plugins.write("tidy", TIDY, provides=["tidy"], permissions=["events:subscribe:tick.*"])
    app = create_test_app(plugin_paths=[plugins.root])
    async with serve(app) as client:
        assert (await client.post("/api/tidy/items", json={"text": "a"})).status_code == 200
        await assert_unloads_cleanly(app, "tidy", cycles=2)
        assert (await client.post("/api/tidy/items", json={"text": "b"})).json() == {"text": "b"}


async def test_an_instance_kept_in_another_module_is_named(
    plugins: PluginWriter, leak_registry: types.ModuleType
) -> None:
    """A plugin that stores itself in another module's global fails, with the path to it."""
    plugins.write("stash", STASHED)
    async with create_test_kernel(plugin_paths=[plugins.root]) as kernel:
        with pytest.raises(AssertionError) as info:
            await assert_unloads_cleanly(kernel, "stash")
    message = str(info.value)
    assert message.startswith(
        "Plugin 'stash' is still in memory after being unloaded (unload 1 of 3, then "
        "gc.collect()): the copy loaded before the first unload keeps the plugin instance "
        "(Main), class nexus_plugins.stash.plugin.Main"
    )
    assert (
        "held by global 'KEEP' of module 'leak_registry' -> list[0] -> the plugin instance (Main)"
        in message
    )


async def test_a_task_started_outside_ctx_tasks_is_named(plugins: PluginWriter) -> None:
    """A task the plugin created itself, still running after unload, fails with its code."""
    plugins.write("poller", UNTRACKED_TASK)
    async with create_test_kernel(plugin_paths=[plugins.root]) as kernel:
        with pytest.raises(AssertionError) as info:
            await assert_unloads_cleanly(kernel, "poller")
    lines = str(info.value).splitlines()
    assert lines[0] == "Plugin 'poller' left things behind when unloaded (unload 1 of 3):"
    assert lines[1].endswith(
        "is still running Main.poll (plugin.py:9); start background work with "
        "ctx.tasks.spawn so it is cancelled on unload"
    )
    assert len(lines) == 2


async def test_a_plugin_that_cannot_come_back_fails(plugins: PluginWriter) -> None:
    """A plugin whose second setup fails is reported with the reason."""
    plugins.write("once", ONCE_ONLY)
    async with create_test_kernel(plugin_paths=[plugins.root]) as kernel:
        with pytest.raises(AssertionError, match="did not become active again after unload 1: "):
            await assert_unloads_cleanly(kernel, "once")
        assert "cannot start twice" in str(kernel.plugins.status("once").reason)


async def test_only_active_directory_plugins_can_be_checked(plugins: PluginWriter) -> None:
    """Inline plugins, inactive plugins and a cycle count below 1 are refused up front."""

    class Inline(Plugin):
        manifest = {"name": "inline", "version": "1.0"}

    plugins.write("broken", "raise RuntimeError('no')")
    kernel = create_test_kernel(plugins=[Inline()], plugin_paths=[plugins.root])
    async with kernel:
        with pytest.raises(ValueError, match="'inline' comes from inline plugin 'inline'"):
            await assert_unloads_cleanly(kernel, "inline")
        with pytest.raises(AssertionError, match=r"'broken' must be active .* it is failed"):
            await assert_unloads_cleanly(kernel, "broken")
        with pytest.raises(ValueError, match="cycles must be at least 1"):
            await assert_unloads_cleanly(kernel, "inline", cycles=0)
        with pytest.raises(TypeError, match="got str"):
            await assert_unloads_cleanly("kernel", "inline")  # type: ignore[arg-type]

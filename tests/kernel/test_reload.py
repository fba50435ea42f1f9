"""Runtime operations on directory plugins: reload from disk, load, unload, and no leaks."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from nexus import Kernel, PluginNotFoundError, PluginState, PluginStateError, ServiceKey
from nexus.kernel.config import NexusConfig
from tests.conftest import PluginWriter

S = PluginState

GREETER = """
from nexus import Plugin, ServiceKey

class Main(Plugin):
    async def setup(self, ctx):
        ctx.services.provide(ServiceKey("greeting"), "{word}")
"""

CONSUMER = """
from nexus import Plugin, ServiceKey

class Main(Plugin):
    async def setup(self, ctx):
        self.seen = ctx.services.get(ServiceKey("greeting"))
"""


def write_pair(plugins: PluginWriter, word: str) -> None:
    plugins.write("greeter", GREETER.format(word=word), provides=["greeting"])
    plugins.write(
        "consumer", CONSUMER, requires={"greeter": ""}, permissions=["services:use:greeting"]
    )


async def test_reload_picks_up_edited_code_and_restarts_dependents(
    plugins: PluginWriter, make_config: Callable[..., NexusConfig]
) -> None:
    """Reload re-imports the plugin from disk, even an edit of the same size, and restarts dependents."""
    write_pair(plugins, "hello")
    async with Kernel(make_config(), entry_points=False) as kernel:
        assert kernel.plugins.plugin("consumer").seen == "hello"  # type: ignore[union-attr]
        write_pair(
            plugins, "howdy"
        )  # same length: a bytecode cache keyed on mtime+size would miss it
        status = await kernel.plugins.reload("greeter")
        assert status.state is S.ACTIVE
        assert kernel.services.get(ServiceKey[str]("greeting")) == "howdy"
        assert kernel.plugins.plugin("consumer").seen == "howdy"  # type: ignore[union-attr]
        assert kernel.plugins.active() == ["greeter", "consumer"]


async def test_reload_with_syntax_error_fails_then_recovers(
    plugins: PluginWriter, make_config: Callable[..., NexusConfig]
) -> None:
    """A broken edit fails the plugin and blocks dependents; fixing it and reloading recovers both."""
    write_pair(plugins, "hello")
    async with Kernel(make_config(), entry_points=False) as kernel:
        (plugins.root / "greeter" / "plugin.py").write_text("def oops(:\n")
        status = await kernel.plugins.reload("greeter")
        assert status.state is S.FAILED and status.failure is not None
        assert status.failure.stage == "import" and "plugin.py:1" in status.failure.reason
        assert kernel.plugins.status("consumer").state is S.BLOCKED
        write_pair(plugins, "fixed")
        await kernel.plugins.reload("greeter")
        assert kernel.plugins.status("consumer").state is S.ACTIVE
        assert kernel.plugins.plugin("consumer").seen == "fixed"  # type: ignore[union-attr]


async def test_reload_rereads_manifest(
    plugins: PluginWriter, make_config: Callable[..., NexusConfig]
) -> None:
    """A manifest edited to an invalid one fails the plugin at validate on reload."""
    plugins.write("solo")
    async with Kernel(make_config(), entry_points=False) as kernel:
        plugins.write("solo", version="2.0.0")
        assert (await kernel.plugins.reload("solo")).version == "2.0.0"
        plugins.write("solo", version="two")
        status = await kernel.plugins.reload("solo")
        assert (
            status.state is S.FAILED
            and status.failure is not None
            and status.failure.stage == "validate"
        )


async def test_unload_then_load(
    plugins: PluginWriter, make_config: Callable[..., NexusConfig]
) -> None:
    """Unload forgets a plugin and blocks what requires it; load finds it on disk again."""
    write_pair(plugins, "hello")
    async with Kernel(make_config(), entry_points=False) as kernel:
        await kernel.plugins.unload("greeter")
        assert "greeter" not in kernel.plugins
        assert not any(name.startswith("nexus_plugins.greeter") for name in sys.modules)
        blocked = kernel.plugins.status("consumer")
        assert blocked.state is S.BLOCKED and "'greeter', which is not installed" in (
            blocked.blocked_reason or ""
        )
        with pytest.raises(PluginNotFoundError, match="No plugin named 'greeter' is installed"):
            await kernel.plugins.reload("greeter")
        await kernel.plugins.load("greeter")
        assert kernel.plugins.status("consumer").state is S.ACTIVE
        with pytest.raises(PluginStateError, match="already loaded"):
            await kernel.plugins.load("greeter")


async def test_load_plugin_added_while_running(
    plugins: PluginWriter, make_config: Callable[..., NexusConfig]
) -> None:
    """A plugin directory created after startup can be loaded without restarting."""
    async with Kernel(make_config(), entry_points=False) as kernel:
        plugins.write("late")
        assert (await kernel.plugins.load("late")).state is S.ACTIVE


LEAKY = """
import asyncio
from nexus import Plugin, ServiceKey

class Main(Plugin):
    async def setup(self, ctx):
        ctx.events.subscribe("tick.*", self.on_tick)
        ctx.services.provide(ServiceKey("leaky"), self)
        ctx.tasks.spawn(self.forever)

    async def forever(self):
        while True:
            await asyncio.sleep(3600)

    async def on_tick(self, event):
        pass
"""


@pytest.mark.slow
async def test_load_unload_cycles_leave_nothing_behind(
    plugins: PluginWriter, make_config: Callable[..., NexusConfig]
) -> None:
    """200 load/unload cycles leave no subscription, service or task, and the code is collectable."""
    plugins.write("leaky", LEAKY, provides=["leaky"], permissions=["events:subscribe:tick.*"])
    async with Kernel(make_config(), entry_points=False) as kernel:
        await kernel.plugins.unload("leaky")
        baseline_tasks = asyncio.all_tasks()
        await kernel.plugins.load("leaky")
        assert len(asyncio.all_tasks()) > len(baseline_tasks)  # its task and its handler's worker
        refs: list[tuple[weakref.ref[Any], weakref.ref[Any]]] = []
        for _ in range(200):
            await kernel.plugins.unload("leaky")
            await kernel.plugins.load("leaky")
            instance = kernel.plugins.plugin("leaky")
            refs.append(
                (weakref.ref(sys.modules["nexus_plugins.leaky.plugin"]), weakref.ref(instance))
            )
            del instance
        await kernel.plugins.unload("leaky")
        assert kernel.bus.subscriptions() == []
        assert [s.key for s in kernel.services.entries()] == ["nexus.platform"]
        assert asyncio.all_tasks() == baseline_tasks
        gc.collect()
        alive = [
            i
            for i, (module, instance) in enumerate(refs)
            if module() is not None or instance() is not None
        ]
        assert alive == []

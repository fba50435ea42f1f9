"""Scoped services, the platform service, and plugins that refuse to let the app start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nexus import Kernel, Plugin, PluginContext, PluginState, ServiceKey, StartupError
from nexus.kernel.config import NexusConfig
from nexus.kernel.platform import PLATFORM, Platform


class Namespace:
    def __init__(self, owner: str) -> None:
        self.owner = owner


NAMESPACE = ServiceKey[Namespace]("namespace", Namespace)


class Provider(Plugin):
    manifest = {"name": "provider", "version": "1.0", "provides": ["namespace"]}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.services.provide_scoped(NAMESPACE, Namespace)


class Consumer(Plugin):
    def __init__(self, name: str) -> None:
        self.manifest = {
            "name": name,
            "version": "1.0",
            "requires": {"provider": ""},
            "permissions": ["services:use:namespace"],
        }

    async def setup(self, ctx: PluginContext[Any]) -> None:
        self.first = ctx.services.get(NAMESPACE)
        self.second = ctx.services.get(NAMESPACE)


async def test_scoped_service_gives_each_consumer_its_own_instance(
    make_config: Callable[..., NexusConfig],
) -> None:
    """A scoped service is made per consumer, named after it, and reused within it."""
    one, two = Consumer("one"), Consumer("two")
    async with Kernel(make_config(), plugins=[Provider(), one, two], entry_points=False):
        assert (one.first.owner, two.first.owner) == ("one", "two")
        assert one.first is one.second


class Watcher(Plugin):
    def __init__(self, grants: list[str]) -> None:
        self.manifest = {"name": "watcher", "version": "1.0", "permissions": grants}
        self.platform: Platform | Exception | None = None

    async def setup(self, ctx: PluginContext[Any]) -> None:
        try:
            self.platform = ctx.services.get(PLATFORM)
        except PermissionError as exc:
            self.platform = exc


async def test_platform_service_needs_its_grant(make_config: Callable[..., NexusConfig]) -> None:
    """Only a plugin granted services:use:nexus.platform can read and steer the kernel."""
    log: list[str] = []
    granted = Watcher(["services:use:nexus.platform"])
    async with Kernel(make_config(), plugins=[granted], entry_points=False):
        platform = granted.platform
        assert isinstance(platform, Platform)
        assert [s.name for s in platform.statuses()] == ["watcher"]
        assert platform.environment == "development"
        assert "nexus.platform" in [s.key for s in platform.services()]
        log.append("ok")
    denied = Watcher([])
    async with Kernel(make_config(), plugins=[denied], entry_points=False):
        assert isinstance(denied.platform, PermissionError)
    assert log == ["ok"]


async def test_startup_error_in_setup_aborts_start(make_config: Callable[..., NexusConfig]) -> None:
    """A plugin raising StartupError stops the application from starting, even without strict."""
    stopped: list[str] = []

    class Early(Plugin):
        manifest = {"name": "early", "version": "1.0"}

        async def teardown(self, ctx: PluginContext[Any]) -> None:
            stopped.append("early")

    class Guard(Plugin):
        manifest = {"name": "guard", "version": "1.0", "after": ["early"]}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            raise StartupError("Set plugins.guard.secret: production needs one.")

    kernel = Kernel(make_config(), plugins=[Early(), Guard()], entry_points=False)
    with pytest.raises(StartupError, match="production needs one"):
        await kernel.start()
    assert stopped == ["early"]
    assert kernel.plugins.status("guard").state is PluginState.FAILED


async def test_scoped_instance_is_renewed_when_the_provider_restarts(
    make_config: Callable[..., NexusConfig],
) -> None:
    """A consumer that did not declare the provider still gets a fresh instance after a restart."""

    class Loose(Plugin):
        manifest = {"name": "loose", "version": "1.0", "permissions": ["services:use:namespace"]}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            self.ctx = ctx

    loose = Loose()
    async with Kernel(make_config(), plugins=[Provider(), loose], entry_points=False) as kernel:
        before = loose.ctx.services.get(NAMESPACE)
        assert loose.ctx.services.get(NAMESPACE) is before
        await kernel.plugins.disable("provider")
        await kernel.plugins.enable("provider")
        after = loose.ctx.services.get(NAMESPACE)
        assert after is not before
        assert after.owner == "loose"

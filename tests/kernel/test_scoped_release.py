"""Scoped service instances are released when the plugin that consumes them stops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nexus import Kernel, Plugin, PluginContext, PluginState, ServiceKey
from nexus.kernel.config import NexusConfig
from nexus.kernel.services import ServiceRegistry


class Handle:
    def __init__(self, owner: str) -> None:
        self.owner = owner


HANDLE = ServiceKey[Handle]("handle", Handle)


class Provider(Plugin):
    manifest = {"name": "provider", "version": "1.0", "provides": ["handle"]}

    def __init__(self, released: list[str]) -> None:
        self.released = released

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.services.provide_scoped(HANDLE, Handle, release=self.release)

    async def release(self, handle: Handle) -> None:
        self.released.append(handle.owner)


class Consumer(Plugin):
    def __init__(self, name: str, log: list[str], *, fail: bool = False) -> None:
        self.manifest = {
            "name": name,
            "version": "1.0",
            "requires": {"provider": ""},
            "permissions": ["services:use:handle"],
        }
        self.log, self.fail = log, fail

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.services.get(HANDLE)
        ctx.services.get(HANDLE)
        if self.fail:
            raise RuntimeError("setup broke after getting the handle")

    async def teardown(self, ctx: PluginContext[Any]) -> None:
        self.log.append(f"teardown {ctx.name}")


async def test_release_runs_once_per_consumer_after_its_teardown(
    make_config: Callable[..., NexusConfig],
) -> None:
    """Stopping a consumer releases its own instance, once, after its teardown."""
    log: list[str] = []
    plugins = [Provider(log), Consumer("one", log), Consumer("two", log)]
    async with Kernel(make_config(), plugins=plugins, entry_points=False) as kernel:
        await kernel.plugins.disable("one")
        assert log == ["teardown one", "one"]
    assert log == ["teardown one", "one", "teardown two", "two"]


async def test_release_runs_when_the_consumer_setup_fails(
    make_config: Callable[..., NexusConfig],
) -> None:
    """A consumer whose setup fails after getting an instance still has it released."""
    log: list[str] = []
    plugins = [Provider(log), Consumer("broken", log, fail=True)]
    async with Kernel(make_config(), plugins=plugins, entry_points=False) as kernel:
        assert kernel.plugins.status("broken").state is PluginState.FAILED
        assert log == ["broken"]


def test_release_must_be_callable() -> None:
    """A release that cannot be called is refused when the service is provided."""
    registry = ServiceRegistry()
    with pytest.raises(TypeError, match="callable release"):
        registry.provide_scoped(HANDLE, Handle, provider="p", release="no")  # type: ignore[arg-type]
    registry.provide(ServiceKey[str]("plain"), "x", provider="p")
    assert registry.release_of("plain") is None
    assert registry.release_of(HANDLE) is None

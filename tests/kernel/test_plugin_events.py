"""Events through a plugin's context: manifest permissions, staging and ownership."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nexus import Event, Kernel, PermissionDeniedError, Plugin, PluginContext, PluginState
from nexus.kernel.config import NexusConfig
from nexus.kernel.correlation import correlation_id


class Listener(Plugin):
    """Subscribes to `patterns` and records what it receives."""

    def __init__(
        self, name: str, patterns: list[str], grants: list[str], priority: int = 0
    ) -> None:
        self.manifest = {"name": name, "version": "1.0", "permissions": grants}
        self.patterns, self.priority = patterns, priority
        self.received: list[tuple[str, str, str | None]] = []
        self.error: Exception | None = None

    async def setup(self, ctx: PluginContext[Any]) -> None:
        try:
            for pattern in self.patterns:
                ctx.events.subscribe(pattern, self.on_event, priority=self.priority)
        except PermissionDeniedError as exc:
            self.error = exc
            raise

    async def on_event(self, event: Event) -> None:
        self.received.append((event.type, event.source, event.correlation_id))


class Publisher(Plugin):
    manifest = {"name": "publisher", "version": "1.0", "permissions": ["events:publish:user.**"]}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        self.ctx = ctx


async def test_wildcard_delivery_with_source_and_correlation(
    make_config: Callable[..., NexusConfig],
) -> None:
    """Plugins receive events matching their patterns, stamped with the publisher and request id."""
    one = Listener("one", ["user.*"], ["events:subscribe:user.*"])
    deep = Listener("deep", ["user.**"], ["events:subscribe:user.**"])
    publisher = Publisher()
    async with Kernel(make_config(), plugins=[one, deep, publisher], entry_points=False):
        token = correlation_id.set("req-42")
        try:
            await publisher.ctx.events.publish_and_wait("user.created", {"id": 1})
            await publisher.ctx.events.publish_and_wait("user.profile.updated")
        finally:
            correlation_id.reset(token)
    assert one.received == [("user.created", "publisher", "req-42")]
    assert deep.received == [
        ("user.created", "publisher", "req-42"),
        ("user.profile.updated", "publisher", "req-42"),
    ]


async def test_publish_outside_grant_is_denied(make_config: Callable[..., NexusConfig]) -> None:
    """Publishing a topic the manifest does not grant raises and delivers nothing."""
    spy = Listener("spy", ["**"], ["events:subscribe:**"])
    publisher = Publisher()
    async with Kernel(make_config(), plugins=[spy, publisher], entry_points=False):
        with pytest.raises(
            PermissionDeniedError,
            match=r"'publisher' lacks permission 'events:publish:order\.paid'",
        ):
            await publisher.ctx.events.publish("order.paid")
        await publisher.ctx.events.publish_and_wait("user.ok")
    assert [topic for topic, _, _ in spy.received] == ["user.ok"]


async def test_subscribe_wider_than_grant_fails_the_plugin(
    make_config: Callable[..., NexusConfig],
) -> None:
    """Subscribing to a pattern wider than granted fails setup with the missing permission."""
    greedy = Listener("greedy", ["user.*", "**"], ["events:subscribe:user.*"])
    async with Kernel(make_config(), plugins=[greedy], entry_points=False) as kernel:
        status = kernel.plugins.status("greedy")
        assert status.state is PluginState.FAILED
        assert "lacks permission 'events:subscribe:**'" in str(status.failure)
        assert kernel.bus.subscriptions() == []  # the user.* subscription was staged, never live


async def test_handler_priority_orders_plugins(make_config: Callable[..., NexusConfig]) -> None:
    """A higher-priority subscriber starts handling an event before a lower-priority one."""
    order: list[str] = []

    class Ordered(Listener):
        async def on_event(self, event: Event) -> None:
            order.append(self.manifest["name"])  # type: ignore[index]

    grant = ["events:subscribe:user.*"]
    low, high = (
        Ordered("low", ["user.*"], grant, priority=0),
        Ordered("high", ["user.*"], grant, priority=10),
    )
    publisher = Publisher()
    async with Kernel(make_config(), plugins=[low, high, publisher], entry_points=False):
        await publisher.ctx.events.publish_and_wait("user.created")
    assert order == ["high", "low"]


async def test_stopping_a_plugin_removes_its_subscriptions(
    make_config: Callable[..., NexusConfig],
) -> None:
    """Once a plugin is disabled its handlers receive nothing more."""
    listener = Listener("listener", ["user.*"], ["events:subscribe:user.*"])
    publisher = Publisher()
    async with Kernel(make_config(), plugins=[listener, publisher], entry_points=False) as kernel:
        await kernel.plugins.disable("listener")
        report = await publisher.ctx.events.publish_and_wait("user.created")
        assert report.delivered == 0
        assert [s.owner for s in kernel.bus.subscriptions()] == []
    assert listener.received == []


async def test_lifecycle_operations_are_announced(make_config: Callable[..., NexusConfig]) -> None:
    """Runtime operations publish nexus.plugin.<operation> with the actor and request id."""
    from nexus.kernel.correlation import actor

    watcher = Listener("watcher", ["nexus.plugin.*"], ["events:subscribe:nexus.plugin.*"])
    publisher = Publisher()
    seen: list[dict[str, Any]] = []

    async with Kernel(make_config(), plugins=[watcher, publisher], entry_points=False) as kernel:
        kernel.bus.subscribe("nexus.plugin.*", lambda event: seen.append(event.data))
        tokens = actor.set("admin-7"), correlation_id.set("req-9")
        try:
            await kernel.plugins.disable("publisher")
            await kernel.plugins.enable("publisher")
        finally:
            actor.reset(tokens[0])
            correlation_id.reset(tokens[1])
        await kernel.bus.publish_and_wait("nexus.plugin.flush")
    assert [(d["operation"], d["state"], d["actor"]) for d in seen[:2]] == [
        ("disable", "disabled", "admin-7"),
        ("enable", "active", "admin-7"),
    ]
    assert [(t, c) for t, _, c in watcher.received[:2]] == [
        ("nexus.plugin.disable", "req-9"),
        ("nexus.plugin.enable", "req-9"),
    ]


async def test_stopping_waits_for_running_handlers_before_teardown(
    make_config: Callable[..., NexusConfig],
) -> None:
    """A handler still running when its plugin stops is cancelled and finished before teardown."""
    import asyncio

    log: list[str] = []
    started = asyncio.Event()

    class Slow(Listener):
        async def on_event(self, event: Event) -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            finally:
                await asyncio.sleep(0.01)  # cleanup inside the handler takes a moment
                log.append("handler finished")

        async def teardown(self, ctx: PluginContext[Any]) -> None:
            log.append("teardown")

    slow = Slow("slow", ["user.*"], ["events:subscribe:user.*"])
    publisher = Publisher()
    async with Kernel(make_config(), plugins=[slow, publisher], entry_points=False) as kernel:
        await publisher.ctx.events.publish("user.created")
        await started.wait()
        await kernel.plugins.disable("slow")
        assert log == ["handler finished", "teardown"]

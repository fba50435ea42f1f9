"""EventRecorder records a kernel's events and waits for the ones a test expects."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import APIRouter

from nexus import EventError, Plugin, PluginContext
from nexus.kernel import EventBus
from nexus.testing import EventRecorder, create_test_app, create_test_kernel, serve


class Announcer(Plugin):
    """Publishes `announcer.ready` during setup."""

    manifest = {"name": "announcer", "version": "1.0", "permissions": ["events:publish:**"]}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        self.ctx = ctx
        await ctx.events.publish("announcer.ready", {"step": "setup"})


async def test_records_matching_events_in_order() -> None:
    """Only events matching the patterns are recorded, in the order they were delivered."""
    async with EventBus() as bus, EventRecorder(bus, "user.*", "audit.**") as recorder:
        for topic in ("user.created", "order.created", "audit.login.failed", "user.deleted"):
            await bus.publish(topic, {"topic": topic})
        await recorder.wait_for("user.deleted")
        assert recorder.topics() == ["user.created", "audit.login.failed", "user.deleted"]
        assert [e.data for e in recorder.matching("user.*")] == [
            {"topic": "user.created"},
            {"topic": "user.deleted"},
        ]
        assert recorder.events[1].type == "audit.login.failed"


async def test_wait_for_returns_once_enough_events_arrived() -> None:
    """wait_for waits for events published later and returns every match so far."""
    async with EventBus() as bus:
        recorder = EventRecorder(bus)

        async def publish_later() -> None:
            for n in range(3):
                await asyncio.sleep(0)
                await bus.publish("tick", n)

        task = asyncio.create_task(publish_later())
        events = await recorder.wait_for("tick", count=3)
        await task
        assert [event.data for event in events] == [0, 1, 2]


async def test_wait_for_names_what_was_recorded_when_it_times_out() -> None:
    """A missing event fails the test with the expected pattern and the topics seen instead."""
    async with EventBus() as bus:
        recorder = EventRecorder(bus)
        await bus.publish("order.created")
        await recorder.wait_for("order.created")
        with pytest.raises(AssertionError) as info:
            await recorder.wait_for("user.*", count=2, timeout=0.01)
    assert str(info.value) == (
        "Expected 2 event(s) matching 'user.*' within 0.01 s, got 0. Recorded: order.created."
    )


async def test_clear_close_and_overlapping_patterns() -> None:
    """Overlapping patterns record an event once; clear forgets; close unsubscribes."""
    async with EventBus() as bus:
        recorder = EventRecorder(bus, "a.*", "a.**")
        await bus.publish("a.b")
        await recorder.wait_for("a.b")
        assert recorder.topics() == ["a.b"]
        recorder.clear()
        assert recorder.events == []
        await bus.publish("a.c")
        await recorder.wait_for("a.c")
        assert recorder.topics() == ["a.c"]
        assert {s.owner for s in bus.subscriptions()} == {"nexus.testing"}
        recorder.close()
        assert bus.subscriptions() == []
        await bus.publish_and_wait("a.d")
        assert recorder.topics() == ["a.c"]


async def test_recorder_made_before_start_sees_startup_events() -> None:
    """A recorder on a kernel that has not started yet records events published in setup."""
    kernel = create_test_kernel(plugins=[Announcer()])
    recorder = EventRecorder(kernel, "announcer.*")
    async with kernel:
        [event] = await recorder.wait_for("announcer.ready")
    assert (event.source, event.data) == ("announcer", {"step": "setup"})


async def test_records_from_an_app_with_request_ids() -> None:
    """Given an app, it records the app's events; one published by a route carries the request id."""

    class Shouter(Announcer):
        async def setup(self, ctx: PluginContext[Any]) -> None:
            router = APIRouter()

            @router.post("/")
            async def shout() -> dict[str, str]:
                await ctx.events.publish("announcer.shout", "hey")
                return {}

            ctx.http.include_router(router)

    app = create_test_app(plugins=[Shouter()])
    recorder = EventRecorder(app, "announcer.*")
    async with serve(app) as client:
        response = await client.post("/api/announcer/")
        [event] = await recorder.wait_for("announcer.shout")
    assert event.data == "hey"
    assert event.correlation_id == response.headers["x-request-id"]


def test_invalid_patterns_and_sources_are_refused() -> None:
    """A bad pattern raises EventError; something without a kernel raises TypeError."""
    with pytest.raises(EventError, match=r"Invalid event pattern 'user\.\.x'"):
        EventRecorder(EventBus(), "user..x")
    with pytest.raises(TypeError, match="got str"):
        EventRecorder("kernel")  # type: ignore[arg-type]

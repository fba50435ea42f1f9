"""FakeClock moves only when advanced, and wakes the tasks sleeping on it."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from nexus import Plugin, PluginContext
from nexus.kernel import inline_plugin
from nexus.testing import FakeClock, create_test_kernel


def test_readings_move_together_and_only_forward() -> None:
    """now, time and monotonic advance by the same step; going back is refused."""
    clock = FakeClock(dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.UTC), monotonic=100.0)
    start = clock.time()
    clock.advance(90)
    clock.advance(dt.timedelta(minutes=1, seconds=30))
    assert clock.now() == dt.datetime(2030, 5, 1, 12, 3, tzinfo=dt.UTC)
    assert clock.time() - start == 180.0
    assert clock.monotonic() == 280.0
    with pytest.raises(ValueError, match=r"only moves forward; got advance\(-1\)"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="aware datetime"):
        FakeClock(dt.datetime(2030, 1, 1))


async def test_sleepers_wake_when_the_clock_passes_their_deadline() -> None:
    """A sleep ends only once advanced past; sleepers due together wake earliest first."""
    clock = FakeClock()
    woke: list[str] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(nap(n, s)) for n, s in (("long", 30), ("short", 10))]
    await clock.wait_for_sleepers(2)
    clock.advance(9.5)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(25)
    await asyncio.gather(*tasks)
    assert woke == ["short", "long"]
    assert clock.sleepers == 0


async def test_cancelled_sleepers_are_forgotten_and_zero_sleeps_yield() -> None:
    """A cancelled sleep no longer counts; sleep(0) returns without advancing the clock."""
    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(5))
    await clock.wait_for_sleepers(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == 0
    await asyncio.wait_for(clock.sleep(0), timeout=1)
    assert clock.monotonic() == 0.0


async def test_wait_for_sleepers_fails_with_the_count() -> None:
    """Waiting for sleepers that never come fails with how many there were."""
    with pytest.raises(AssertionError, match=r"Expected 1 task\(s\) sleeping .* found 0"):
        await FakeClock().wait_for_sleepers(timeout=0.01)


class Heartbeat(Plugin):
    """Publishes `heartbeat.beat` every `interval` seconds of its (injectable) clock."""

    manifest = {
        "name": "heartbeat",
        "version": "1.0",
        "permissions": ["events:publish:heartbeat.*"],
    }

    def __init__(
        self,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sleep, self.monotonic = sleep, monotonic
        self.beats: list[float] = []

    async def setup(self, ctx: PluginContext[Any]) -> None:
        async def beat() -> None:
            while True:
                await self.sleep(60)
                self.beats.append(self.monotonic())

        ctx.tasks.spawn(beat)


async def test_a_plugin_given_the_fake_clock_runs_on_it() -> None:
    """The documented pattern: pass the clock's methods to the plugin; advancing runs its task."""
    clock = FakeClock()
    plugin = Heartbeat(sleep=clock.sleep, monotonic=clock.monotonic)
    async with create_test_kernel(plugins=[inline_plugin(Heartbeat.manifest, lambda: plugin)]):
        for _ in range(3):
            await clock.wait_for_sleepers(1)
            clock.advance(60)
        await clock.wait_for_sleepers(1)
    assert plugin.beats == [60.0, 120.0, 180.0]

"""The redis transport when things break: a consumer killed mid-delivery, Redis down and back."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from nexus.errors import TransportError
from nexus.kernel.events import Event, EventBus
from nexus.testing.servers import RedisServer, start_redis
from tests.redis.conftest import MakeBus, ready, until, until_async

ROOT = Path(__file__).resolve().parents[2]


async def _line(stream: asyncio.StreamReader) -> str:
    async with asyncio.timeout(30):
        return (await stream.readline()).decode().strip()


async def test_entries_of_a_killed_consumer_are_claimed_and_handled(
    make_bus: MakeBus, redis_server: RedisServer, prefix: str
) -> None:
    """A consumer SIGKILLed holding unacknowledged events: a survivor claims and handles all."""
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.redis._consumer",
        redis_server.url,
        prefix,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert doomed.stdout is not None
        assert await _line(doomed.stdout) == "ready"
        publisher = await make_bus("publisher")
        sent = await asyncio.gather(*(publisher.publish("task.run", n) for n in range(20)))
        first = await _line(doomed.stdout)
        assert first.startswith("got ")  # it holds the events now, and handles the first
    finally:
        if doomed.returncode is None:
            os.kill(doomed.pid, signal.SIGKILL)
        await doomed.wait()

    handled: list[Event] = []

    async def handle(event: Event) -> None:
        handled.append(event)

    handle.__qualname__ = "handle"  # the same subscription as the dead consumer's
    survivor = await make_bus("survivor", claim_idle=0.3)
    survivor.subscribe("task.*", handle, owner="workers")
    await until(lambda: len(handled) >= 20)
    await asyncio.sleep(0.1)  # a duplicate would arrive now
    assert sorted(event.id for event in handled) == sorted(event.id for event in sent)
    assert {event.attempt for event in handled} == {2}  # redelivered, once each
    assert first == f"got {sent[0].id}"


async def test_publishing_while_redis_is_down_fails_and_everything_resumes_after(
    make_bus: MakeBus, own_redis: RedisServer
) -> None:
    """Redis stopped: publish raises TransportError naming it, health fails; restarted: all works."""
    url = own_redis.url
    publisher = await make_bus("publisher", url=url, timeout=0.5)
    consumer = await make_bus("consumer", url=url, timeout=0.5)
    shared: list[Any] = []
    broadcast: list[Any] = []

    async def on_shared(event: Event) -> None:
        shared.append(event.data)

    async def on_broadcast(event: Event) -> None:
        broadcast.append(event.data)

    consumer.subscribe("job.*", on_shared, owner="jobs")
    consumer.subscribe("job.*", on_broadcast, owner="dashboard", mode="broadcast")
    await ready(consumer)
    await publisher.publish("job.done", 1)
    await until(lambda: shared == broadcast == [1])

    own_redis.stop()
    with pytest.raises(TransportError) as raised:
        await publisher.publish("job.done", 2)
    assert f"Redis at {url} is unreachable" in str(raised.value)
    assert "The event was not written" in str(raised.value)
    health = await publisher.health()
    assert not health.ok
    assert health.detail.startswith(f"Redis at {url} is unreachable")
    assert not (await consumer.health()).ok

    restarted = start_redis(own_redis.port)
    try:
        await publisher.publish("job.done", 3)  # no restart of either bus
        await until(lambda: shared == broadcast == [1, 3])
        assert (await publisher.health()).ok
        await until_healthy(consumer)
    finally:
        restarted.stop()


async def until_healthy(bus: EventBus) -> None:
    """Wait until the bus's readers are back on Redis."""
    await until_async(lambda: _is_healthy(bus))


async def _is_healthy(bus: EventBus) -> bool:
    return (await bus.health()).ok

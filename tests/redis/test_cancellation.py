"""Stopping the redis transport ends its tasks, even when redis-py loses the cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nexus.errors import TransportError
from nexus.kernel.events import Event, EventBus
from nexus.redis import RedisTransport


async def handle(event: Event) -> None:
    """A handler with nothing to do: the test is about the transport's own tasks."""


async def publish_until_closed(transport: RedisTransport) -> None:
    """Keep the writer (and, through the handlers, the acker) busy until the transport closes."""
    with contextlib.suppress(TransportError):
        while True:
            await transport.publish(Event("x", "user.seen", "test", 0.0, {}, None))


def transport_tasks() -> set[asyncio.Task[Any]]:
    """The transport's reader, writer and acker tasks that have not finished."""
    return {
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("nexus.redis:") and not task.done()
    }


async def test_closing_the_transport_while_readers_block_ends_every_task(
    redis_server: Any, prefix: str
) -> None:
    """Closing it while readers wait in XREADGROUP/XREAD and events flow returns; no task runs."""
    # redis-py 8 loses a cancellation that lands at some points of a command, so the
    # transport is stopped at many points of its readers' 1 ms XREADGROUP/XREAD cycle.
    for attempt in range(30):
        transport = RedisTransport(
            redis_server.url, prefix=f"{prefix}-{attempt}", instance_id="a", block=0.001
        )
        bus = EventBus(transport)
        bus.subscribe("user.*", handle, mode="shared")
        bus.subscribe("user.**", handle, mode="broadcast")
        await bus.start()
        await transport.ready(timeout=10)
        publisher = asyncio.create_task(publish_until_closed(transport))
        await asyncio.sleep(0.0002 * attempt)
        assert transport_tasks(), "the readers, writer and acker run before close"
        closing = asyncio.create_task(transport.close())
        done, _ = await asyncio.wait([closing], timeout=10)  # a bound for a hang, not a timing
        assert done == {closing}, f"close() hung (attempt {attempt}): {transport_tasks()}"
        assert transport_tasks() == set()
        await publisher
        await bus.close()

"""An instance for test_failover: takes `task.*` events for the group `workers:task.*:handle`,
prints `got <event id>` for the first, and hangs in its handler without acknowledging any.

    python -m tests.redis._consumer <redis url> <prefix>
"""

from __future__ import annotations

import asyncio
import sys

from nexus.kernel.events import Event, EventBus
from nexus.redis import RedisTransport


async def handle(event: Event) -> None:
    print(f"got {event.id}", flush=True)
    await asyncio.Event().wait()  # busy "forever": killed before it acknowledges anything


async def main(url: str, prefix: str) -> None:
    transport = RedisTransport(url, prefix=prefix, instance_id="doomed", block=0.05)
    bus = EventBus(transport, handler_timeout=600)
    bus.subscribe("task.*", handle, owner="workers")
    async with bus:
        await transport.ready(timeout=10)
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))

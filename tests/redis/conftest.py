"""Event buses on the redis transport against the session's real redis-server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import pytest
from redis.asyncio import Redis

from nexus.kernel.events import EventBus
from nexus.redis import RedisTransport


async def until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait for something the buses do in the background; fail the test after `limit` s."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the state changes in the buses' own tasks
            await asyncio.sleep(0.01)


async def until_async(condition: Callable[[], Awaitable[bool]], limit: float = 10.0) -> None:
    """`until` for a condition that asks Redis."""
    async with asyncio.timeout(limit):
        while not await condition():  # noqa: ASYNC110 - the answer is in Redis: ask again
            await asyncio.sleep(0.01)


class MakeBus(Protocol):
    async def __call__(self, instance_id: str, **options: Any) -> EventBus: ...


@pytest.fixture
def prefix() -> str:
    """Key prefix of this test alone, so tests share the server but no streams or groups."""
    return f"test-{secrets.token_hex(4)}"


@pytest.fixture
async def client(redis_server: Any) -> AsyncIterator[Redis]:
    """A plain redis-py client, to look at what the transport left in Redis."""
    redis = Redis.from_url(redis_server.url)
    yield redis
    await redis.aclose()


@pytest.fixture
async def make_bus(redis_server: Any, prefix: str) -> AsyncIterator[MakeBus]:
    """Start buses as separate instances (own transport, own id); all closed at the end.

    Bus options (retries, retry_delay, ...) and transport options (claim_idle, maxlen, ...)
    may be mixed; reads block 50 ms so the tests' instances notice things quickly.
    """
    buses: list[EventBus] = []
    transport_options = {"maxlen", "batch", "block", "claim_idle", "max_deliveries", "timeout"}

    async def make(instance_id: str, **options: Any) -> EventBus:
        chosen = {k: options.pop(k) for k in list(options) if k in transport_options}
        transport = RedisTransport(
            options.pop("url", redis_server.url),
            prefix=prefix,
            instance_id=instance_id,
            **{"block": 0.05, **chosen},
        )
        bus = EventBus(transport, **{"retry_delay": 0.001, **options})
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()


async def ready(*buses: EventBus) -> None:
    """Wait until every subscription of these buses reads its streams."""
    for bus in buses:
        transport = bus.transport
        assert isinstance(transport, RedisTransport)
        await transport.ready(timeout=10)

"""The Redis cache honours cancellations that redis-py loses during a command."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nexus.plugins.cache.redis import RedisCache, RedisCacheStore


@pytest.fixture
async def cache(redis_server: Any, prefix: str) -> AsyncIterator[RedisCache]:
    """One namespace of a Redis cache store of this test's own prefix."""
    store = RedisCacheStore(redis_server.url, prefix=prefix)
    yield store.namespace("loops")
    await store.aclose()


async def test_a_loop_of_cache_calls_stops_when_cancelled(cache: RedisCache) -> None:
    """A task calling the cache in a loop ends cancelled, wherever in a command the cancel lands."""
    # redis-py 8 drops a cancellation at some points of a command (the call then returns
    # normally), so the loop is cancelled at many points of its command cycle.
    for attempt in range(30):

        async def loop() -> None:
            while True:
                await cache.set("counter", 1)
                await cache.get("counter")

        task = asyncio.create_task(loop())
        await asyncio.sleep(0.0001 * attempt)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)  # a bound for a hang, not a timing
        assert done == {task}, f"the loop ran on after cancel (attempt {attempt})"
        assert task.cancelled()

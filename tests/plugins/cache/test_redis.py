"""The Redis backend against a real server: key layout, JSON values, locks across processes."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from nexus.plugins.cache import CacheError, CacheUnavailableError, RedisCacheStore
from nexus.testing.servers import RedisServer, free_port
from tests.plugins.cache.conftest import unique_prefix


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client on the test server, to look at what the cache wrote."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def stores(redis_server: RedisServer) -> AsyncIterator[list[RedisCacheStore]]:
    """Two stores with their own connections and the same prefix: two processes' caches."""
    prefix = unique_prefix()
    pair = [RedisCacheStore(redis_server.url, prefix=prefix) for _ in range(2)]
    yield pair
    for store in pair:
        await store.aclose()


async def test_keys_live_under_prefix_and_namespace(redis_server: RedisServer, raw: Redis) -> None:
    """A value is stored as JSON at <prefix>:<namespace>:<key>, with its ttl in milliseconds."""
    prefix = unique_prefix()
    store = RedisCacheStore(redis_server.url, prefix=prefix)
    try:
        cache = store.namespace("billing")
        await cache.set("invoice:7", {"total": 12.5}, ttl=30)
        assert await raw.get(f"{prefix}:billing:invoice:7") == b'{"total":12.5}'
        assert 29_000 < await raw.pttl(f"{prefix}:billing:invoice:7") <= 30_000
        await cache.set("forever", 1)
        assert await raw.pttl(f"{prefix}:billing:forever") == -1
    finally:
        await store.aclose()


async def test_clear_scans_its_prefix_and_leaves_other_keys(
    redis_server: RedisServer, raw: Redis
) -> None:
    """clear() unlinks every key of the namespace, over many SCAN batches, and nothing else."""
    prefix = unique_prefix()
    store = RedisCacheStore(redis_server.url, prefix=prefix)
    try:
        cache, sibling = store.namespace("app"), store.namespace("app_2")
        await cache.set_many({f"k{i}": i for i in range(1234)})
        await sibling.set("k1", "kept")
        await raw.set(f"{prefix}:unrelated", b"kept")
        assert await cache.clear() == 1234
        assert await raw.keys(f"{prefix}:app:*") == []
        assert await sibling.get("k1") == "kept"
        assert await raw.get(f"{prefix}:unrelated") == b"kept"
    finally:
        await store.aclose()


async def test_prefix_glob_characters_are_matched_literally(
    redis_server: RedisServer, raw: Redis
) -> None:
    """A prefix containing glob characters clears only its own keys."""
    base = unique_prefix()
    store = RedisCacheStore(redis_server.url, prefix=f"{base}[*]")
    try:
        await store.namespace("app").set("k", 1)
        await raw.set(f"{base}x:app:k", b"1")
        assert await store.namespace("app").clear() == 1
        assert await raw.get(f"{base}x:app:k") == b"1"
    finally:
        await store.aclose()


@dataclasses.dataclass
class Point:
    x: int
    y: int


async def test_values_round_trip_as_json(stores: list[RedisCacheStore]) -> None:
    """JSON data comes back equal; tuples and dataclasses come back as their JSON form."""
    cache = stores[0].namespace("app")
    value: dict[str, Any] = {"s": "é", "n": 1, "f": 0.5, "b": True, "none": None, "l": [1, [2]]}
    await cache.set("json", value)
    await cache.set("tuple", (1, 2))
    await cache.set("point", Point(1, 2))
    assert await cache.get("json") == value
    assert await cache.get("tuple") == [1, 2]
    assert await cache.get("point") == {"x": 1, "y": 2}


async def test_values_that_are_not_json_are_refused(stores: list[RedisCacheStore]) -> None:
    """Setting a value orjson cannot encode raises TypeError naming the key; nothing is stored."""
    cache = stores[0].namespace("app")
    with pytest.raises(TypeError, match="must be JSON-serialisable; 'k' was given a object"):
        await cache.set("k", object())
    with pytest.raises(TypeError, match="'bad' was given a set"):
        await cache.set_many({"good": 1, "bad": {1}})
    assert await cache.get_many(["k", "good", "bad"]) == {}


async def test_foreign_data_under_the_prefix_is_reported(
    stores: list[RedisCacheStore], raw: Redis
) -> None:
    """A key under the cache's prefix that holds non-JSON data raises CacheError naming it."""
    store = stores[0]
    await raw.set(f"{store.prefix}:app:k", b"\x00not json")
    with pytest.raises(CacheError, match=rf"Redis key '{store.prefix}:app:k' .* not JSON"):
        await store.namespace("app").get("k")


async def test_incr_sets_the_ttl_only_when_it_creates_the_counter(
    stores: list[RedisCacheStore], raw: Redis
) -> None:
    """A counter created with a ttl keeps that expiry; a later incr does not extend it."""
    store = stores[0]
    cache = store.namespace("app")
    await cache.incr("window", ttl=30)
    await raw.pexpire(f"{store.prefix}:app:window", 5_000)
    assert await cache.incr("window", 3, ttl=30) == 4
    assert 0 < await raw.pttl(f"{store.prefix}:app:window") <= 5_000


async def test_stampede_across_two_processes_runs_the_factory_once(
    stores: list[RedisCacheStore],
) -> None:
    """Fifty callers split over two stores (two processes) run the factory once between them."""
    calls = 0

    async def expensive() -> list[int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return [1, 2, 3]

    caches = [store.namespace("app") for store in stores]
    results = await asyncio.gather(
        *(caches[i % 2].get_or_set("report", expensive, ttl=60) for i in range(50))
    )
    assert calls == 1
    assert results == [[1, 2, 3]] * 50


async def test_another_process_waits_for_the_lock_holder(stores: list[RedisCacheStore]) -> None:
    """While one process computes a value, another waits and then reads that value."""
    first, second = (store.namespace("app") for store in stores)
    started, release = asyncio.Event(), asyncio.Event()

    async def holder() -> str:
        started.set()
        await release.wait()
        return "computed by the first"

    async def never() -> str:
        raise AssertionError("the second process must not compute the value")

    leader = asyncio.create_task(first.get_or_set("k", holder))
    await started.wait()
    follower = asyncio.create_task(second.get_or_set("k", never))
    await asyncio.sleep(0.05)  # let the follower find the lock taken and start polling
    release.set()
    assert await leader == "computed by the first"
    assert await follower == "computed by the first"


async def test_a_failed_holder_lets_another_process_compute(
    stores: list[RedisCacheStore],
) -> None:
    """When the lock holder's factory fails, it releases the lock and a waiter computes."""
    first, second = (store.namespace("app") for store in stores)
    started, release = asyncio.Event(), asyncio.Event()

    async def failing() -> str:
        started.set()
        await release.wait()
        raise RuntimeError("upstream timeout")

    async def working() -> str:
        return "computed by the second"

    leader = asyncio.create_task(first.get_or_set("k", failing))
    await started.wait()
    follower = asyncio.create_task(second.get_or_set("k", working))
    await asyncio.sleep(0.05)
    release.set()
    with pytest.raises(RuntimeError, match="upstream timeout"):
        await leader
    assert await follower == "computed by the second"
    assert await first.get("k") == "computed by the second"


async def test_a_stuck_holder_is_outwaited_after_lock_timeout(redis_server: RedisServer) -> None:
    """A waiter computes the value itself once the holder held the lock for lock_timeout."""
    prefix = unique_prefix()
    first, second = (
        RedisCacheStore(redis_server.url, prefix=prefix, lock_timeout=0.2) for _ in range(2)
    )
    started, release = asyncio.Event(), asyncio.Event()

    async def stuck() -> str:
        started.set()
        await release.wait()
        return "late"

    async def working() -> str:
        return "computed by the second"

    try:
        leader = asyncio.create_task(first.namespace("app").get_or_set("k", stuck))
        await started.wait()
        assert await second.namespace("app").get_or_set("k", working) == "computed by the second"
        release.set()
        assert await leader == "late"
    finally:
        await first.aclose()
        await second.aclose()


async def test_unreachable_redis_raises_a_clear_error_with_the_password_masked() -> None:
    """Every call to an unreachable Redis raises CacheUnavailableError naming the masked URL."""
    port = free_port()
    store = RedisCacheStore(f"redis://app:hunter2@127.0.0.1:{port}/0?password=hunter2", timeout=0.5)
    try:
        cache = store.namespace("app")
        calls = (lambda: cache.get("k"), lambda: cache.set("k", 1), cache.clear, store.ping)
        for call in calls:
            with pytest.raises(CacheUnavailableError) as caught:
                await call()
            message = str(caught.value)
            assert f"The cache at redis://app:**********@127.0.0.1:{port}/0" in message
            assert "hunter2" not in message
            assert "Check plugins.cache.url" in message
            assert isinstance(caught.value, ConnectionError)
    finally:
        await store.aclose()


def test_invalid_urls_and_prefixes_are_refused() -> None:
    """A URL redis-py cannot parse, or a blank prefix, is refused when the store is made."""
    with pytest.raises(ValueError, match=r"Invalid Redis URL http://:\*+@example"):
        RedisCacheStore("http://:secret@example")
    with pytest.raises(ValueError, match="key prefix must be non-empty"):
        RedisCacheStore("redis://127.0.0.1:1/0", prefix=" ")


def test_the_redis_client_is_imported_only_for_a_redis_store() -> None:
    """Importing the cache plugin (and using its memory backend) does not import redis."""
    code = (
        "import sys, nexus.plugins.cache as c; c.MemoryCacheStore().namespace('app'); "
        "print(any(m == 'redis' or m.startswith('redis.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_missing_redis_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the redis package, making a Redis store says which extra to install."""
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'nexus-platform\[redis\]'"):
        RedisCacheStore("redis://127.0.0.1:1/0")

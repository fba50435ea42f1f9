"""`cached`: results kept per argument set, keys built deterministically, caches found late."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest

from nexus.plugins.cache import Cache, MemoryCacheStore, RedisCacheStore, cached
from tests.plugins.cache.conftest import FakeClock

Store = MemoryCacheStore | RedisCacheStore


class Weather:
    """The documented example: a method cached in the cache its instance holds."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.calls: list[tuple[str, int]] = []

    @cached(lambda self: self.cache, ttl=60)
    async def forecast(self, city: str, days: int = 3) -> dict[str, Any]:
        self.calls.append((city, days))
        return {"city": city, "days": days}


async def test_a_method_is_computed_once_per_argument_set(store: Store) -> None:
    """Equal calls (positional, keyword or default alike) share one result; others do not."""
    weather = Weather(store.namespace("app"))
    assert await weather.forecast("Oslo") == {"city": "Oslo", "days": 3}
    assert await weather.forecast(city="Oslo", days=3) == {"city": "Oslo", "days": 3}
    assert await weather.forecast("Oslo", 3) == {"city": "Oslo", "days": 3}
    assert await weather.forecast("Oslo", days=5) == {"city": "Oslo", "days": 5}
    assert weather.calls == [("Oslo", 3), ("Oslo", 5)]


async def test_instances_sharing_a_cache_share_entries_and_invalidate(store: Store) -> None:
    """`self` is not part of the key; invalidate forgets one call's result."""
    cache = store.namespace("app")
    first, second = Weather(cache), Weather(cache)
    await first.forecast("Oslo")
    await second.forecast("Oslo")
    assert second.calls == []
    assert await second.forecast.invalidate("Oslo") is True
    assert await second.forecast.invalidate("Oslo") is False
    await second.forecast("Oslo")
    assert second.calls == [("Oslo", 3)]
    assert Weather.forecast.cache_key(first, "Oslo") == first.forecast.cache_key(city="Oslo")


async def test_concurrent_calls_run_the_function_once(store: Store) -> None:
    """Many concurrent calls with the same arguments run the function once."""
    cache = store.namespace("app")
    calls = 0

    @cached(cache)
    async def report(day: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return f"report for {day}"

    results = await asyncio.gather(*(report("monday") for _ in range(20)))
    assert results == ["report for monday"] * 20
    assert calls == 1


async def test_key_template_and_key_function(store: Store) -> None:
    """`key` as a template or a function decides where the result is stored."""
    cache = store.namespace("app")

    @cached(cache, key="user:{user_id}")
    async def load_user(user_id: int, *, verbose: bool = False) -> dict[str, int]:
        return {"id": user_id}

    @cached(lambda: cache, key=lambda a, b: f"sum:{a}+{b}")
    async def add(a: int, b: int) -> int:
        return a + b

    await load_user(7)
    assert await cache.get("user:7") == {"id": 7}
    assert load_user.cache_key(7, verbose=True) == "user:7"
    assert await add(2, 3) == 5
    assert await cache.get("sum:2+3") == 5


async def test_default_keys_are_deterministic_and_distinct() -> None:
    """The default key names the function and hashes the arguments, dict order aside."""
    cache = MemoryCacheStore().namespace("app")

    @cached(cache)
    async def search(query: dict[str, Any], tags: frozenset[str] = frozenset()) -> int:
        return 1

    key = search.cache_key({"a": 1, "b": [2]}, frozenset({"x", "y"}))
    assert key.startswith(f"{__name__}.test_default_keys_are_deterministic_and_distinct.")
    assert key == search.cache_key(query={"b": [2], "a": 1}, tags=frozenset({"y", "x"}))
    assert key != search.cache_key({"a": 1, "b": [2]})
    assert search.cache_key({"a": 1}) != search.cache_key({"a": "1"})


async def test_rich_argument_types_make_keys() -> None:
    """Dates, UUIDs, bytes, tuples and dataclasses are valid key material."""
    cache = MemoryCacheStore().namespace("app")

    @dataclasses.dataclass
    class Query:
        text: str

    @cached(cache)
    async def lookup(*args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)

    ident = uuid.UUID(int=1)
    day = dt.date(2024, 1, 1)
    assert await lookup(day, ident, b"\x00", (1, 2), Query("q"), flag=True) == 6
    assert lookup.cache_key(day, ident, b"\x00", (1, 2), Query("q"), flag=True) != (
        lookup.cache_key(day, ident, b"\x01", (1, 2), Query("q"), flag=True)
    )


async def test_arguments_that_cannot_be_keys_are_named() -> None:
    """An argument that cannot be hashed into a key raises TypeError naming it and `key=`."""
    cache = MemoryCacheStore().namespace("app")

    @cached(cache)
    async def fetch(url: str, session: object) -> str:
        return url

    with pytest.raises(
        TypeError, match=r"argument 'session' \(object\) cannot be part of a cache key. Pass key="
    ):
        await fetch("https://example.org", object())


async def test_ttl_is_applied() -> None:
    """Results expire after the decorator's ttl."""
    clock = FakeClock()
    cache = MemoryCacheStore(clock=clock).namespace("app")
    calls = 0

    @cached(cache, ttl=30)
    async def now() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await now() == 1
    clock.advance(29)
    assert await now() == 1
    clock.advance(1)
    assert await now() == 2


async def test_exceptions_are_not_cached() -> None:
    """A call that raises is retried on the next call."""
    cache = MemoryCacheStore().namespace("app")
    attempts = 0

    @cached(cache)
    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("try again")
        return "ok"

    with pytest.raises(ConnectionError):
        await flaky()
    assert await flaky() == "ok"


def test_misuse_is_refused_when_decorating() -> None:
    """Sync functions, non-cache sources and bad ttls fail at decoration time."""
    cache = MemoryCacheStore().namespace("app")

    def sync() -> int:
        return 1

    with pytest.raises(
        TypeError,
        match=r"cached decorates async functions; '.*<locals>\.sync' is not one",
    ):
        cached(cache)(sync)  # type: ignore[arg-type]

    async def work() -> int:
        return 1

    with pytest.raises(TypeError, match="needs a Cache or a function returning one, got 42"):
        cached(42)(work)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        cached(cache, ttl=0)


async def test_a_getter_needing_self_on_a_call_without_arguments() -> None:
    """A getter taking `self` on a function called without arguments raises a clear TypeError."""

    @cached(lambda owner: owner.cache)
    async def orphan() -> int:
        return 1

    with pytest.raises(TypeError, match="the cache getter takes the first argument"):
        await orphan()

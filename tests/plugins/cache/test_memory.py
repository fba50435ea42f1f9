"""The memory backend: LRU eviction, TTLs on an injected clock, one store for all namespaces."""

from __future__ import annotations

import pytest

from nexus.plugins.cache import MemoryCacheStore
from tests.plugins.cache.conftest import FakeClock


async def test_the_least_recently_used_entry_is_evicted_first() -> None:
    """When full, the store drops the entry read or written longest ago."""
    store = MemoryCacheStore(max_entries=3)
    cache = store.namespace("app")
    await cache.set("a", 1)
    await cache.set("b", 2)
    await cache.set("c", 3)
    assert await cache.get("a") == 1  # a is now the most recently used
    await cache.set("d", 4)
    assert await cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "c": 3, "d": 4}
    await cache.incr("c")  # c is used again, so a goes next
    await cache.set("e", 5)
    assert await cache.get_many(["a", "c", "d", "e"]) == {"c": 4, "d": 4, "e": 5}
    assert store.stats.evictions == 2
    assert len(store) == 3


async def test_max_entries_bounds_every_namespace_together() -> None:
    """Namespaces share the store: one namespace's writes can evict another's entries."""
    store = MemoryCacheStore(max_entries=2)
    alpha, beta = store.namespace("alpha"), store.namespace("beta")
    await alpha.set("k", "a")
    await beta.set("k", "b")
    await beta.set("j", "b")
    assert await alpha.get("k") is None
    assert await beta.get_many(["k", "j"]) == {"k": "b", "j": "b"}


async def test_ttl_follows_the_injected_clock() -> None:
    """An entry lives exactly ttl seconds of the store's clock."""
    clock = FakeClock()
    cache = MemoryCacheStore(clock=clock).namespace("app")
    await cache.set("k", "v", ttl=10)
    clock.advance(9.999)
    assert await cache.get("k") == "v"
    clock.advance(0.001)
    assert await cache.get("k") is None
    assert await cache.delete("k") is False


async def test_default_ttl_and_explicit_ttl() -> None:
    """Without a ttl an entry gets the store's default_ttl; with one, its own."""
    clock = FakeClock()
    cache = MemoryCacheStore(clock=clock, default_ttl=5).namespace("app")
    await cache.set("default", 1)
    await cache.set("long", 1, ttl=50)
    clock.advance(5)
    assert await cache.get_many(["default", "long"]) == {"long": 1}


async def test_expired_entries_are_dropped_on_writes() -> None:
    """Entries that expired are removed by the next write even if nobody reads them."""
    clock = FakeClock()
    store = MemoryCacheStore(clock=clock)
    cache = store.namespace("app")
    await cache.set_many({f"k{i}": i for i in range(100)}, ttl=1)
    await cache.set("kept", "yes")
    clock.advance(1)
    await cache.set("new", "yes")
    assert len(store) == 2


async def test_expired_entries_do_not_count_as_cleared_or_deleted() -> None:
    """clear() counts and delete() reports only values that were still live."""
    clock = FakeClock()
    cache = MemoryCacheStore(clock=clock).namespace("app")
    await cache.set("old", 1, ttl=1)
    await cache.set("live", 1)
    clock.advance(2)
    assert await cache.clear() == 1
    await cache.set("old", 1, ttl=1)
    clock.advance(2)
    assert await cache.delete("old") is False


async def test_rewriting_a_key_replaces_its_expiry() -> None:
    """A key rewritten with a longer ttl outlives its first expiry, even through purges."""
    clock = FakeClock()
    store = MemoryCacheStore(clock=clock)
    cache = store.namespace("app")
    await cache.set("hot", "short", ttl=1)
    for i in range(200):
        await cache.set("hot", i, ttl=60)
    clock.advance(1)
    await cache.set("other", 1)  # purges what expired by now
    assert await cache.get("hot") == 199
    clock.advance(59)
    await cache.set("other", 2)
    assert await cache.get("hot") is None
    assert len(store) == 1


async def test_incr_keeps_the_expiry_it_was_created_with() -> None:
    """A counter created with a ttl expires then, however often it is incremented later."""
    clock = FakeClock()
    cache = MemoryCacheStore(clock=clock).namespace("app")
    assert await cache.incr("window", ttl=10) == 1
    clock.advance(9)
    assert await cache.incr("window", ttl=10) == 2
    clock.advance(1)
    assert await cache.get("window") is None
    assert await cache.incr("window", ttl=10) == 1


async def test_values_are_kept_as_the_same_objects() -> None:
    """The memory backend stores the object itself, not a copy (documented)."""
    cache = MemoryCacheStore().namespace("app")
    value = {"items": [1]}
    await cache.set("k", value)
    assert await cache.get("k") is value


async def test_hits_and_misses_are_counted() -> None:
    """Reads count as hits or misses in the store's stats."""
    store = MemoryCacheStore()
    cache = store.namespace("app")
    await cache.get("k")
    await cache.set("k", 1)
    await cache.get("k")
    await cache.get_many(["k", "j"])
    assert (store.stats.hits, store.stats.misses) == (2, 2)


def test_invalid_store_settings_are_refused() -> None:
    """max_entries must be a positive int and default_ttl a positive number."""
    with pytest.raises(ValueError, match="max_entries must be a positive int, got 0"):
        MemoryCacheStore(max_entries=0)
    with pytest.raises(ValueError, match="default_ttl must be a positive number"):
        MemoryCacheStore(default_ttl=-1)

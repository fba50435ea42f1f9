"""The Cache protocol, run against the memory backend and a real Redis alike."""

from __future__ import annotations

import asyncio

import pytest

from nexus.plugins.cache import Cache, CacheUnavailableError, MemoryCacheStore, RedisCacheStore
from tests.plugins.cache.conftest import StoreFactory

Store = MemoryCacheStore | RedisCacheStore


async def test_set_get_delete(store: Store) -> None:
    """A stored value is read back until it is deleted; delete says whether it was there."""
    cache = store.namespace("app")
    await cache.set("user:1", {"name": "Ada", "roles": ["admin"]})
    assert await cache.get("user:1") == {"name": "Ada", "roles": ["admin"]}
    assert await cache.delete("user:1") is True
    assert await cache.delete("user:1") is False
    assert await cache.get("user:1") is None


async def test_missing_keys_give_the_default_and_none_is_a_value(store: Store) -> None:
    """A missing key returns `default`; a stored None is returned as None, not the default."""
    cache = store.namespace("app")
    assert await cache.get("nothing", "fallback") == "fallback"
    await cache.set("empty", None)
    assert await cache.get("empty", "fallback") is None


async def test_set_replaces_the_value(store: Store) -> None:
    """Setting a key again replaces its value."""
    cache = store.namespace("app")
    await cache.set("k", 1)
    await cache.set("k", 2)
    assert await cache.get("k") == 2


async def test_short_ttl_expires(store: Store) -> None:
    """A value set with a ttl is gone once the ttl has passed."""
    cache = store.namespace("app")
    await cache.set("brief", "here", ttl=0.05)
    await cache.set("lasting", "here")
    await asyncio.sleep(0.15)
    assert await cache.get("brief") is None
    assert await cache.get("lasting") == "here"


async def test_incr_counts_from_zero(store: Store) -> None:
    """incr creates a missing counter, adds any amount and reads back as an int."""
    cache = store.namespace("app")
    assert await cache.incr("hits") == 1
    assert await cache.incr("hits", 5) == 6
    assert await cache.incr("hits", -2) == 4
    assert await cache.get("hits") == 4
    assert await cache.incr("windowed", ttl=60) == 1
    assert await cache.incr("windowed", ttl=60) == 2


async def test_incr_refuses_a_non_integer(store: Store) -> None:
    """incr on a key holding text raises TypeError naming the key."""
    cache = store.namespace("app")
    await cache.set("name", "Ada")
    with pytest.raises(TypeError, match="Cache key 'name' in namespace 'app' holds"):
        await cache.incr("name")
    with pytest.raises(TypeError, match="Cache key 'name' in namespace 'app' holds"):
        await cache.incr("name", ttl=60)
    assert await cache.get("name") == "Ada"
    with pytest.raises(TypeError, match="incr adds an int"):
        await cache.incr("hits", 1.5)  # type: ignore[arg-type]


async def test_get_many_and_set_many(store: Store) -> None:
    """set_many stores every item; get_many returns only the keys present."""
    cache = store.namespace("app")
    await cache.set_many({"a": 1, "b": [2], "c": None}, ttl=60)
    assert await cache.get_many(["a", "b", "c", "zzz"]) == {"a": 1, "b": [2], "c": None}
    assert await cache.get_many([]) == {}
    await cache.set_many({})


async def test_clear_only_clears_its_namespace(store: Store) -> None:
    """clear() removes this namespace's keys and counts them; other namespaces keep theirs."""
    mine, theirs = store.namespace("mine"), store.namespace("theirs")
    for key in ("a", "b", "c"):
        await mine.set(key, key)
    await theirs.set("a", "kept")
    assert await mine.clear() == 3
    assert await mine.get_many(["a", "b", "c"]) == {}
    assert await theirs.get("a") == "kept"
    assert await mine.clear() == 0


async def test_namespaces_do_not_share_keys(store: Store) -> None:
    """The same key in two namespaces holds two values."""
    alpha, beta = store.namespace("alpha"), store.namespace("beta")
    await alpha.set("shared", "from alpha")
    await beta.set("shared", "from beta")
    assert await alpha.get("shared") == "from alpha"
    assert await beta.get("shared") == "from beta"
    assert alpha.namespace == "alpha"


async def test_get_or_set_computes_on_a_miss_only(store: Store) -> None:
    """get_or_set stores the factory's value (None included) and serves it afterwards."""
    cache = store.namespace("app")
    calls: list[str] = []

    async def load() -> None:
        calls.append("load")

    assert await cache.get_or_set("nothing", load) is None
    assert await cache.get_or_set("nothing", load) is None
    assert calls == ["load"]


async def test_get_or_set_stampede_runs_the_factory_once(store: Store) -> None:
    """Fifty concurrent misses for one key run the factory once and all get its value."""
    cache = store.namespace("app")
    calls = 0

    async def expensive() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return {"answer": 42}

    results = await asyncio.gather(*(cache.get_or_set("report", expensive) for _ in range(50)))
    assert calls == 1
    assert results == [{"answer": 42}] * 50


async def test_get_or_set_shares_a_failure_and_caches_nothing(store: Store) -> None:
    """A failing factory fails every concurrent caller once; the next call tries again."""
    cache = store.namespace("app")
    calls = 0

    async def broken() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise RuntimeError("backend down")

    results = await asyncio.gather(
        *(cache.get_or_set("k", broken) for _ in range(10)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(r, RuntimeError) and str(r) == "backend down" for r in results)

    async def working() -> int:
        return 7

    assert await cache.get_or_set("k", working) == 7


async def test_a_cancelled_caller_does_not_cancel_the_others(store: Store) -> None:
    """When the caller that started the factory gives up, the others still get the value."""
    cache = store.namespace("app")
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    first = asyncio.create_task(cache.get_or_set("k", slow))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.get_or_set("k", slow))
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert await second == "done"
    assert first.cancelled()
    assert await cache.get("k") == "done"


async def test_invalid_ttl_and_keys_are_refused(store: Store) -> None:
    """A ttl that is not a positive number, or a key that is not a str, is refused at once."""
    cache: Cache = store.namespace("app")
    for ttl in (0, -1, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
            await cache.set("k", 1, ttl=ttl)
    with pytest.raises(TypeError, match="Cache keys are strings, got int 7"):
        await cache.get(7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Cache namespace 'a:b' must be"):
        store.namespace("a:b")


async def test_default_ttl_applies_when_no_ttl_is_given(make_store: StoreFactory) -> None:
    """A store's default_ttl expires values set without a ttl; an explicit ttl wins."""
    cache = make_store(default_ttl=0.05).namespace("app")
    await cache.set("default", 1)
    await cache.set("explicit", 1, ttl=60)
    await cache.incr("counter")
    await asyncio.sleep(0.15)
    assert await cache.get_many(["default", "explicit", "counter"]) == {"explicit": 1}


async def test_a_closed_store_refuses_use(store: Store) -> None:
    """After the store closes (the cache plugin stopped), calls raise CacheUnavailableError."""
    cache = store.namespace("app")
    await store.aclose()
    with pytest.raises(CacheUnavailableError, match="the cache plugin stopped"):
        await cache.get("k")
    with pytest.raises(CacheUnavailableError):
        await store.ping()

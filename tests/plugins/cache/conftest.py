"""Cache stores for the tests: memory, and a real Redis under a key prefix unique to each test."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from nexus.kernel import PluginSource, inline_plugin
from nexus.plugins.cache import CachePlugin, MemoryCacheStore, RedisCacheStore

MANIFEST = Path(__file__).parents[3] / "src/nexus/plugins/cache/manifest.json"


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def cache_plugin() -> PluginSource:
    """The built-in cache plugin from its real manifest.json."""
    return inline_plugin(json.loads(MANIFEST.read_text()), CachePlugin)


def unique_prefix() -> str:
    """A Redis key prefix no other test uses (the Redis server is shared by the session)."""
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using this runs against memory and against a real Redis."""
    if request.param == "redis":
        request.getfixturevalue("redis_server")
    return str(request.param)


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix unique to this test."""
    return unique_prefix()


StoreFactory = Callable[..., MemoryCacheStore | RedisCacheStore]


@pytest.fixture
async def make_store(
    backend: str, prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[StoreFactory]:
    """Opens stores of the `backend` kind (Redis ones share this test's prefix); closes them."""
    opened: list[MemoryCacheStore | RedisCacheStore] = []

    def make(**options: Any) -> MemoryCacheStore | RedisCacheStore:
        made: MemoryCacheStore | RedisCacheStore
        if backend == "redis":
            url = request.getfixturevalue("redis_server").url
            made = RedisCacheStore(url, prefix=prefix, **options)
        else:
            made = MemoryCacheStore(**options)
        opened.append(made)
        return made

    yield make
    for made in opened:
        await made.aclose()


@pytest.fixture
def store(make_store: StoreFactory) -> MemoryCacheStore | RedisCacheStore:
    """A fresh store of the `backend` kind, closed after the test."""
    return make_store()


@pytest.fixture
def backend_config(backend: str, prefix: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """`plugins.cache` settings for the `backend` kind."""
    if backend == "redis":
        url = request.getfixturevalue("redis_server").url
        return {"backend": "redis", "url": url, "key_prefix": prefix}
    return {"backend": "memory"}

"""The cache plugin in a real kernel and app: a namespace per plugin, health, lifecycle, config."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter

from nexus import Health, Plugin, PluginContext, PluginState
from nexus.kernel import discover
from nexus.plugins.cache import CACHE, Cache, CacheSettings, CacheUnavailableError, PluginCache
from nexus.testing import create_test_app, create_test_kernel, serve
from nexus.testing.servers import RedisServer, free_port, start_redis
from tests.plugins.cache.conftest import cache_plugin


class Consumer(Plugin):
    """A plugin that keeps its cache and writes its own name under a shared key at setup."""

    def __init__(self, name: str, *, grants: tuple[str, ...] = ("services:use:cache",)) -> None:
        self.manifest = {
            "name": name,
            "version": "1.0.0",
            "requires": {"cache": ">=1.0"},
            "permissions": list(grants),
        }
        self.cache: Cache | None = None

    async def setup(self, ctx: PluginContext[Any]) -> None:
        self.cache = ctx.services.get(CACHE)
        await self.cache.set("shared", ctx.name)


def cache_of(consumer: Consumer) -> Cache:
    if consumer.cache is None:
        raise AssertionError(f"{consumer.manifest['name']} has no cache")
    return consumer.cache


async def test_each_plugin_gets_its_own_namespace(backend_config: dict[str, Any]) -> None:
    """Two plugins writing the same key read back their own values; clear stays in its lane."""
    alpha, beta = Consumer("alpha"), Consumer("beta")
    kernel = create_test_kernel(
        plugins=[cache_plugin(), alpha, beta], config={"plugins": {"cache": backend_config}}
    )
    async with kernel:
        assert cache_of(alpha).namespace == "alpha"
        assert await cache_of(alpha).get("shared") == "alpha"
        assert await cache_of(beta).get("shared") == "beta"
        await cache_of(alpha).clear()
        assert await cache_of(alpha).get("shared") is None
        assert await cache_of(beta).get("shared") == "beta"


async def test_using_the_cache_needs_the_grant() -> None:
    """A plugin without services:use:cache fails at setup with the missing permission named."""
    kernel = create_test_kernel(plugins=[cache_plugin(), Consumer("sneaky", grants=())])
    async with kernel:
        status = kernel.plugins.status("sneaky")
        assert status.state is PluginState.FAILED
        assert "lacks permission 'services:use:cache'" in str(status.failure)


async def test_disable_and_enable_keep_consumers_working(backend_config: dict[str, Any]) -> None:
    """Disabling the cache blocks its consumers; enabling it restarts them with a live cache."""
    consumer = Consumer("alpha")
    kernel = create_test_kernel(
        plugins=[cache_plugin(), consumer], config={"plugins": {"cache": backend_config}}
    )
    async with kernel:
        old = cache_of(consumer)
        await kernel.plugins.disable("cache")
        assert kernel.plugins.status("alpha").state is PluginState.BLOCKED
        with pytest.raises(CacheUnavailableError, match="the cache plugin stopped"):
            await old.get("shared")
        await kernel.plugins.enable("cache")
        assert kernel.plugins.status("alpha").state is PluginState.ACTIVE
        fresh = cache_of(consumer)
        assert fresh is not old
        assert await fresh.get("shared") == "alpha"
        assert await fresh.incr("visits") == 1
        assert (await kernel.plugins.health())["cache"].ok


async def test_health_reports_the_backend_and_counters(backend_config: dict[str, Any]) -> None:
    """The cache is healthy when its backend answers, with its URL and hit counters."""
    consumer = Consumer("alpha")
    kernel = create_test_kernel(
        plugins=[cache_plugin(), consumer], config={"plugins": {"cache": backend_config}}
    )
    async with kernel:
        await cache_of(consumer).get("shared")
        await cache_of(consumer).get("missing")
        health = (await kernel.plugins.health())["cache"]
        assert health.ok
        assert (health.data["hits"], health.data["misses"]) == (1, 1)
        expected = "memory://" if backend_config["backend"] == "memory" else backend_config["url"]
        assert health.detail == f"cache at {expected}"


async def test_unreachable_redis_leaves_the_plugin_active_but_unhealthy(
    redis_server: RedisServer,
) -> None:
    """With Redis down the cache starts, reports unhealthy and raises; it recovers by itself."""
    port = free_port()
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    kernel = create_test_kernel(
        plugins=[cache_plugin()],
        config={"plugins": {"cache": {"backend": "redis", "url": url, "timeout": 0.5}}},
    )
    async with kernel:
        assert kernel.plugins.status("cache").state is PluginState.ACTIVE
        health = (await kernel.plugins.health())["cache"]
        assert not health.ok
        assert f"The cache at redis://:**********@127.0.0.1:{port}/0 is unavailable" in (
            health.detail
        )
        assert "s3cret" not in health.detail
        server = start_redis(port)
        try:
            assert (await kernel.plugins.health())["cache"] == Health.healthy(
                f"cache at redis://:**********@127.0.0.1:{port}/0",
                url=f"redis://:**********@127.0.0.1:{port}/0",
                hits=0,
                misses=0,
            )
        finally:
            server.stop()


async def test_consumer_setup_fails_clearly_while_redis_is_down() -> None:
    """A consumer that writes at setup while Redis is down fails with the cache's message."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    kernel = create_test_kernel(
        plugins=[cache_plugin(), Consumer("alpha")],
        config={"plugins": {"cache": {"backend": "redis", "url": url, "timeout": 0.5}}},
    )
    async with kernel:
        status = kernel.plugins.status("alpha")
        assert status.state is PluginState.FAILED
        assert f"The cache at {url} is unavailable" in str(status.failure)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"backend": "redis"}, "backend 'redis' needs url"),
        ({"backend": "redis", "url": "http://example.org"}, "url must start with redis://"),
        ({"backend": "disk"}, "backend"),
        ({"max_entries": 0}, "max_entries"),
        ({"default_ttl": 0}, "default_ttl"),
        ({"ttl": 5}, "ttl"),
    ],
)
async def test_invalid_settings_fail_the_plugin_at_config(
    settings: dict[str, Any], message: str
) -> None:
    """Bad plugins.cache settings fail the plugin at the config stage, naming the problem."""
    kernel = create_test_kernel(plugins=[cache_plugin()], config={"plugins": {"cache": settings}})
    async with kernel:
        status = kernel.plugins.status("cache")
        assert status.state is PluginState.FAILED
        assert status.failure is not None and status.failure.stage == "config"
        assert message in status.failure.reason


async def test_the_redis_url_is_redacted_in_the_shown_config(redis_server: RedisServer) -> None:
    """The Redis URL is a secret: the effective configuration masks it."""
    url = redis_server.url.replace("redis://", "redis://:pw@")
    kernel = create_test_kernel(
        plugins=[cache_plugin()], config={"plugins": {"cache": {"backend": "redis", "url": url}}}
    )
    assert kernel.config.redacted_plugin("cache", CacheSettings)["url"] == "**********"
    assert "pw@" not in str(kernel.config.redacted())


def test_the_plugin_is_installed_as_an_entry_point() -> None:
    """`cache` is discovered from the nexus.plugins entry points with its manifest."""
    found = discover([], entry_points=True, only="cache")
    manifest = found.sources["cache"].manifest
    assert manifest.provides == ["cache"]
    assert manifest.entry == "plugin:CachePlugin"


class Pages(Plugin):
    """Serves pages whose rendering is cached in the plugin's own cache."""

    manifest = {
        "name": "pages",
        "version": "1.0.0",
        "optional": {"cache": ">=1.0"},
        "permissions": ["services:use:cache"],
    }

    def __init__(self) -> None:
        self.renders = 0

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.get("/{slug}")
        async def page(slug: str, cache: PluginCache) -> dict[str, Any]:
            async def render() -> dict[str, Any]:
                self.renders += 1
                return {"slug": slug, "render": self.renders}

            return await cache.get_or_set(f"page:{slug}", render, ttl=60)

        ctx.http.include_router(router)


async def test_routes_get_their_plugins_cache_with_plugin_cache() -> None:
    """`cache: PluginCache` in a route is the route's plugin's cache; repeats hit it."""
    pages = Pages()
    app = create_test_app(plugins=[cache_plugin(), pages])
    async with serve(app) as client:
        first = (await client.get("/api/pages/home")).json()
        second = (await client.get("/api/pages/home")).json()
        assert first == second == {"slug": "home", "render": 1}
        assert (await client.get("/api/pages/about")).json() == {"slug": "about", "render": 2}
        assert await app.kernel.services.get(CACHE, requester="pages").get("page:home") == first
        ready = (await client.get("/readyz")).json()
        assert ready["plugins"]["cache"] == {
            "state": "active",
            "healthy": True,
            "ready": True,
            "detail": "cache at memory://",
        }


async def test_plugin_cache_without_the_cache_plugin_is_a_503_problem() -> None:
    """With the cache plugin disabled, a route needing PluginCache answers 503 problem+json."""
    app = create_test_app(
        plugins=[cache_plugin(), Pages()], config={"plugins": {"cache": {"enabled": False}}}
    )
    async with serve(app) as client:
        response = await client.get("/api/pages/home")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "5"
        assert response.json()["detail"] == "The cache is not available."

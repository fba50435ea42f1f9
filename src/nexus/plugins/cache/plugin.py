"""CachePlugin: offers every plugin its own cache namespace, in memory or in Redis."""

from __future__ import annotations

from nexus import Health, Plugin, PluginContext
from nexus.plugins.cache.errors import CacheUnavailableError
from nexus.plugins.cache.memory import MemoryCacheStore
from nexus.plugins.cache.protocol import CACHE
from nexus.plugins.cache.redis import RedisCacheStore
from nexus.plugins.cache.settings import CacheSettings


def open_store(settings: CacheSettings) -> MemoryCacheStore | RedisCacheStore:
    """The store `settings` describe (not connected yet for Redis)."""
    if settings.backend == "redis" and settings.url is not None:
        return RedisCacheStore(
            settings.url.get_secret_value(),
            prefix=settings.key_prefix,
            default_ttl=settings.default_ttl,
            timeout=settings.timeout,
            lock_timeout=settings.lock_timeout,
        )
    return MemoryCacheStore(max_entries=settings.max_entries, default_ttl=settings.default_ttl)


class CachePlugin(Plugin):
    """Provides CACHE: `ctx.services.get(CACHE)` is the calling plugin's own namespace."""

    Config = CacheSettings

    def __init__(self) -> None:
        self.store: MemoryCacheStore | RedisCacheStore | None = None

    async def setup(self, ctx: PluginContext[CacheSettings]) -> None:
        """Open the store and offer a namespace of it to each consuming plugin."""
        store = open_store(ctx.config)
        ctx.on_cleanup(store.aclose)
        if isinstance(store, RedisCacheStore):
            try:
                await store.ping()
            except CacheUnavailableError as exc:
                # A cache outage must not stop the application: the plugin reports unhealthy
                # on /readyz and cache calls raise, until Redis answers again.
                ctx.logger.warning("%s", exc)
        ctx.services.provide_scoped(CACHE, store.namespace)
        self.store = store
        ctx.logger.info("Cache backend: %s at %s", ctx.config.backend, store.url)

    async def health(self) -> Health:
        """Healthy when the backend answers; reports hits and misses since start."""
        store = self.store
        if store is None:
            return Health.unhealthy("the cache is not set up")
        stats = {"hits": store.stats.hits, "misses": store.stats.misses}
        if isinstance(store, MemoryCacheStore):
            stats |= {"entries": len(store), "evictions": store.stats.evictions}
        try:
            await store.ping()
        except CacheUnavailableError as exc:
            return Health.unhealthy(str(exc), url=store.url, **stats)
        return Health.healthy(f"cache at {store.url}", url=store.url, **stats)

"""The cache built-in plugin: a key-value cache per plugin, in memory or in Redis.

A plugin gets its own namespace through the CACHE service (manifest: `"optional": {"cache":
">=1.0"}` or `requires`, and `"permissions": ["services:use:cache"]`):

```python
from nexus.plugins.cache import CACHE

cache = ctx.services.get(CACHE)
await cache.set("greeting", "hello", ttl=60)
profile = await cache.get_or_set(f"profile:{user_id}", lambda: load_profile(user_id), ttl=300)
```

Route handlers take their plugin's cache as a dependency:

```python
@router.get("/report/{day}")
async def report(day: str, cache: PluginCache) -> dict[str, Any]:
    return await cache.get_or_set(f"report:{day}", lambda: build_report(day), ttl=60)
```

Two plugins writing the same key never see each other's values. `cached` memoises async
functions and methods in a cache; see `nexus.plugins.cache.decorators`.
"""

from __future__ import annotations

from nexus.plugins.cache.decorators import CachedFunction, cached
from nexus.plugins.cache.dependencies import PluginCache
from nexus.plugins.cache.errors import CacheError, CacheUnavailableError
from nexus.plugins.cache.memory import MemoryCache, MemoryCacheStore
from nexus.plugins.cache.plugin import CachePlugin
from nexus.plugins.cache.protocol import CACHE, Cache, CacheStats
from nexus.plugins.cache.redis import RedisCache, RedisCacheStore
from nexus.plugins.cache.settings import CacheSettings

__all__ = [
    "CACHE",
    "Cache",
    "CacheError",
    "CachePlugin",
    "CacheSettings",
    "CacheStats",
    "CacheUnavailableError",
    "CachedFunction",
    "MemoryCache",
    "MemoryCacheStore",
    "PluginCache",
    "RedisCache",
    "RedisCacheStore",
    "cached",
]

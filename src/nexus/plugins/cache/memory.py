"""The memory backend: one size-bounded LRU per process, TTLs on a monotonic clock.

Every namespace lives in the same store (so `max_entries` bounds the whole process) under its
own keys, and `clear()` of one namespace leaves the others alone. Values are kept as the very
objects given, not copies: mutating a value after `set`, or one returned by `get`, changes
the cached value too. Treat cached values as read-only, or store immutable ones.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

from nexus.plugins.cache._flight import SingleFlight
from nexus.plugins.cache.errors import CacheUnavailableError
from nexus.plugins.cache.protocol import (
    CacheStats,
    check_amount,
    check_key,
    check_namespace,
    check_ttl,
)

T = TypeVar("T")

_MISSING: Final = object()
_URL: Final = "memory://"

Clock = Callable[[], float]
"""Seconds on a clock that never goes back (time.monotonic, or a fake one in tests)."""


class _Entry:
    __slots__ = ("expires_at", "value")

    def __init__(self, value: Any, expires_at: float | None) -> None:
        self.value, self.expires_at = value, expires_at


class MemoryCacheStore:
    """The entries of every namespace in one LRU of at most `max_entries`, for one process.

    Expired entries are dropped when read and, in expiry order, on every write; when the store
    is full, the least recently used entry makes room.
    """

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        default_ttl: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be a positive int, got {max_entries!r}.")
        self.max_entries: Final = max_entries
        self.default_ttl: Final = check_ttl(default_ttl, "default_ttl")
        self.stats: Final = CacheStats()
        self.is_closed = False
        self._clock = clock
        # (namespace, key) -> entry; the order is least recently used first.
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._namespaces: dict[str, set[str]] = {}
        # (expires_at, namespace, key) of entries with a TTL; may hold stale items, which are
        # skipped when popped and dropped when the heap is rebuilt.
        self._expiries: list[tuple[float, str, str]] = []
        self._flights = SingleFlight()

    @property
    def url(self) -> str:
        """Where the entries live, for messages: `memory://`."""
        return _URL

    def __len__(self) -> int:
        """How many entries the store holds (expired ones included until they are dropped)."""
        return len(self._entries)

    def namespace(self, name: str) -> MemoryCache:
        """The cache of one namespace (for the plugin service: the consuming plugin's name)."""
        return MemoryCache(self, check_namespace(name))

    async def ping(self) -> None:
        """Return if the store is usable; CacheUnavailableError once it was closed."""
        self._check_open()

    async def aclose(self) -> None:
        """Drop every entry and refuse further use."""
        self.is_closed = True
        self._entries.clear()
        self._namespaces.clear()
        self._expiries.clear()

    # -- operations for MemoryCache ----------------------------------------------------------

    def _check_open(self) -> None:
        if self.is_closed:
            raise CacheUnavailableError(
                _URL,
                "the cache plugin stopped and closed this cache",
                hint="Get CACHE from ctx.services again once the cache plugin is active",
            )

    def _expiry(self, ttl: float | None) -> float | None:
        ttl = check_ttl(ttl)
        if ttl is None:
            ttl = self.default_ttl
        return None if ttl is None else self._clock() + ttl

    def lookup(self, namespace: str, key: str) -> Any:
        """The live value under (namespace, key), or _MISSING; counts a hit or a miss."""
        self._check_open()
        full = (namespace, check_key(key))
        entry = self._entries.get(full)
        if entry is not None:
            if entry.expires_at is None or self._clock() < entry.expires_at:
                self._entries.move_to_end(full)
                self.stats.hits += 1
                return entry.value
            self._drop(full)
        self.stats.misses += 1
        return _MISSING

    def store(self, namespace: str, key: str, value: Any, ttl: float | None) -> None:
        """Put a value (replacing any previous one), then make room if the store is full."""
        self._check_open()
        full = (namespace, check_key(key))
        expires_at = self._expiry(ttl)
        self._purge_expired()
        self._put(full, _Entry(value, expires_at))
        self._evict()

    def increment(self, namespace: str, key: str, amount: int, ttl: float | None) -> int:
        """Add `amount` to the int under the key, creating it (with `ttl`) if needed."""
        self._check_open()
        full = (namespace, check_key(key))
        check_amount(amount)
        expires_at = self._expiry(ttl)
        self._purge_expired()
        entry = self._entries.get(full)
        if entry is not None and (entry.expires_at is None or self._clock() < entry.expires_at):
            if isinstance(entry.value, bool) or not isinstance(entry.value, int):
                raise TypeError(
                    f"Cache key {key!r} in namespace {namespace!r} holds a "
                    f"{type(entry.value).__name__}, not an int, so incr cannot add to it."
                )
            entry.value += amount
            self._entries.move_to_end(full)
            return int(entry.value)
        self._put(full, _Entry(amount, expires_at))
        self._evict()
        return amount

    async def fill(
        self, namespace: str, key: str, factory: Callable[[], Awaitable[T]], ttl: float | None
    ) -> T:
        """Run `factory` once for every concurrent caller of this key and store its value."""

        async def run() -> T:
            value = await factory()
            self.store(namespace, key, value, ttl)
            return value

        return await self._flights.run((namespace, key), run)

    def remove(self, namespace: str, key: str) -> bool:
        """Remove a key; whether a live value was there."""
        self._check_open()
        full = (namespace, check_key(key))
        entry = self._entries.get(full)
        if entry is None:
            return False
        self._drop(full)
        return entry.expires_at is None or self._clock() < entry.expires_at

    def clear_namespace(self, namespace: str) -> int:
        """Remove every key of one namespace; how many live values were removed."""
        self._check_open()
        keys = self._namespaces.pop(namespace, set())
        now, removed = self._clock(), 0
        for key in keys:
            entry = self._entries.pop((namespace, key))
            if entry.expires_at is None or now < entry.expires_at:
                removed += 1
        return removed

    def _put(self, full: tuple[str, str], entry: _Entry) -> None:
        self._entries[full] = entry
        self._entries.move_to_end(full)
        self._namespaces.setdefault(full[0], set()).add(full[1])
        if entry.expires_at is not None:
            heapq.heappush(self._expiries, (entry.expires_at, *full))

    def _drop(self, full: tuple[str, str]) -> None:
        del self._entries[full]
        keys = self._namespaces[full[0]]
        keys.discard(full[1])
        if not keys:
            del self._namespaces[full[0]]

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            full = next(iter(self._entries))
            self._drop(full)
            self.stats.evictions += 1

    def _purge_expired(self) -> None:
        expiries, now = self._expiries, self._clock()
        while expiries and expiries[0][0] <= now:
            _, namespace, key = heapq.heappop(expiries)
            entry = self._entries.get((namespace, key))
            # The key may have been rewritten since this item was pushed: check the entry.
            if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
                self._drop((namespace, key))
        # Rewriting keys leaves stale items behind; rebuild before they outnumber the entries.
        if len(expiries) > 2 * len(self._entries) + 64:
            self._expiries = [
                (entry.expires_at, *full)
                for full, entry in self._entries.items()
                if entry.expires_at is not None
            ]
            heapq.heapify(self._expiries)


class MemoryCache:
    """One namespace of a MemoryCacheStore; implements the Cache protocol."""

    __slots__ = ("_name", "_store")

    def __init__(self, store: MemoryCacheStore, namespace: str) -> None:
        self._store, self._name = store, namespace

    def __repr__(self) -> str:
        return f"MemoryCache(namespace={self._name!r})"

    @property
    def namespace(self) -> str:
        """The namespace this cache reads and writes."""
        return self._name

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under `key`, or `default` when it is missing or expired."""
        value = self._store.lookup(self._name, key)
        return default if value is _MISSING else value

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store `value` under `key`, replacing any previous value and its expiry."""
        self._store.store(self._name, key, value, ttl)

    async def delete(self, key: str) -> bool:
        """Remove `key`; whether it was there."""
        return self._store.remove(self._name, key)

    async def clear(self) -> int:
        """Remove every key of this namespace (and no other); how many were removed."""
        return self._store.clear_namespace(self._name)

    async def get_or_set(
        self, key: str, factory: Callable[[], Awaitable[T]], *, ttl: float | None = None
    ) -> T:
        """The value under `key`; on a miss, run `factory` once for all concurrent callers."""
        check_ttl(ttl)
        value = self._store.lookup(self._name, key)
        if value is not _MISSING:
            return value  # type: ignore[no-any-return]

        return await self._store.fill(self._name, key, factory, ttl)

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Add `amount` to the int under `key` (0 when missing); `ttl` applies on creation."""
        return self._store.increment(self._name, key, amount, ttl)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those `keys` that are present."""
        found: dict[str, Any] = {}
        for key in keys:
            value = self._store.lookup(self._name, key)
            if value is not _MISSING:
                found[key] = value
        return found

    async def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        """Store several values with the same `ttl`."""
        for key, value in items.items():
            self._store.store(self._name, key, value, ttl)

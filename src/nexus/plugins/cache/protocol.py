"""The Cache protocol every backend implements, and the CACHE service key."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from nexus import ServiceKey

T = TypeVar("T")

_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,128}\Z")


@dataclass(slots=True)
class CacheStats:
    """Counters of one backend since it was created, in this process."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    """Entries dropped because the store was full (memory backend only)."""


class Cache(Protocol):
    """A key-value cache private to one namespace (for a plugin, its own name).

    Keys are strings. `ttl` is in seconds; `None` means the backend's default TTL
    (`plugins.cache.default_ttl`, itself `None` for "never expires"). A stored `None` is a
    value like any other: `get(key, default)` tells it apart from a missing key.
    """

    @property
    def namespace(self) -> str:
        """The namespace this cache reads and writes."""
        ...

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under `key`, or `default` when it is missing or expired."""
        ...

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store `value` under `key`, replacing any previous value and its expiry."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove `key`; whether it was there."""
        ...

    async def clear(self) -> int:
        """Remove every key of this namespace (and no other); how many were removed."""
        ...

    async def get_or_set(
        self, key: str, factory: Callable[[], Awaitable[T]], *, ttl: float | None = None
    ) -> T:
        """The value under `key`; on a miss, `await factory()` once, store and return it.

        Concurrent misses for one key share a single run of `factory` (across processes too,
        where the backend is shared); if it raises, every waiter gets the error and nothing
        is stored.
        """
        ...

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Add `amount` to the integer under `key` (0 when missing); the new value.

        `ttl` applies when this call creates the key; later increments keep its expiry, so a
        counter with a TTL counts within a fixed window.
        """
        ...

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those `keys` that are present."""
        ...

    async def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        """Store several values with the same `ttl`."""
        ...


CACHE: Final = ServiceKey[Cache]("cache", Cache)
"""The cache service: each consuming plugin gets its own namespace (grant `services:use:cache`)."""


def check_namespace(namespace: str) -> str:
    """`namespace` if it is a valid namespace name, else ValueError."""
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ValueError(
            f"Cache namespace {namespace!r} must be 1 to 128 letters, digits, '_', '.' or '-' "
            f"(a plugin name is one)."
        )
    return namespace


def check_key(key: str) -> str:
    """`key` if it is a string, else TypeError."""
    if not isinstance(key, str):
        raise TypeError(f"Cache keys are strings, got {type(key).__name__} {key!r}.")
    return key


def check_ttl(ttl: float | None, what: str = "ttl") -> float | None:
    """`ttl` if it is None or a positive finite number of seconds, else ValueError."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not (0 < ttl < math.inf):
        raise ValueError(f"{what} must be a positive number of seconds or None, got {ttl!r}.")
    return float(ttl)


def check_amount(amount: int) -> int:
    """`amount` if it is an int (not a bool), else TypeError."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"incr adds an int, got {type(amount).__name__} {amount!r}.")
    return amount

"""The Redis backend: one cache for every process of the application, a key prefix per namespace.

Keys live under `<prefix>:<namespace>:<key>` (`nexus:cache:<plugin>:<key>` by default);
`clear()` unlinks that prefix with SCAN, never FLUSHDB, so the rest of the database survives.
Values are stored as JSON (orjson): dicts, lists, strings, numbers, booleans and None come
back as they went in; dataclasses, datetimes, UUIDs and enums are stored as their JSON form
and come back as dicts, strings and numbers.

`redis` (the `redis` extra) is imported when a store is created, not with this module.

Every command runs in `RedisCacheStore.errors()`, which also raises a cancellation redis-py
lost during the command (see `nexus.redis.raise_if_cancelled`): a caller's `asyncio.timeout`
or a task being stopped then still takes effect at the next cache call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from nexus.plugins.cache._flight import SingleFlight
from nexus.plugins.cache.errors import CacheError, CacheUnavailableError
from nexus.plugins.cache.protocol import (
    CacheStats,
    check_amount,
    check_key,
    check_namespace,
    check_ttl,
)
from nexus.redis.client import raise_if_cancelled

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")

logger = logging.getLogger("nexus.plugins.cache")

_MISSING: Final = object()
_MASK: Final = "**********"
_SCAN_BATCH: Final = 500
_FIRST_POLL: Final = 0.005
_LAST_POLL: Final = 0.1
_GLOB = re.compile(r"([*?\[\]\\])")
# Delete the lock only if it is still ours: after it expired, someone else may hold it.
_RELEASE_LOCK: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
_MISSING_EXTRA: Final = (
    "The cache's redis backend needs the redis client: pip install 'nexus-platform[redis]'"
)


def redact_url(url: str) -> str:
    """`url` with its password (in the user info or a `password` parameter) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{_MASK}@{host}" if has_password else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, _MASK if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return text or type(exc).__name__


def _milliseconds(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


class RedisCacheStore:
    """A Redis connection pool shared by every namespace of the cache.

    Args:
        url: `redis://[[user]:password@]host[:port][/db]`, `rediss://...` or `unix://...`.
        prefix: the first part of every key, so several applications can share a database.
        timeout: seconds to connect and to wait for each answer.
        lock_timeout: how long `get_or_set` lets one caller compute a missing value before
            another may try: set it above your slowest factory.
        retries: how often a command is retried after a connection error or timeout.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "nexus:cache",
        default_ttl: float | None = None,
        timeout: float = 2.0,
        lock_timeout: float = 10.0,
        retries: int = 2,
    ) -> None:
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import ExponentialBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.exceptions import RedisError, ResponseError
            from redis.exceptions import TimeoutError as RedisTimeoutError
        except ImportError as exc:
            raise ImportError(_MISSING_EXTRA) from exc
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"The cache key prefix must be non-empty without spaces: {prefix!r}.")
        self.url: Final = redact_url(url)
        self.prefix: Final = prefix
        self.default_ttl: Final = check_ttl(default_ttl, "default_ttl")
        lock_seconds = check_ttl(lock_timeout, "lock_timeout")
        if lock_seconds is None:
            raise ValueError("lock_timeout must be a positive number of seconds, got None.")
        self.lock_timeout: Final = lock_seconds
        self.stats: Final = CacheStats()
        self.is_closed = False
        try:
            self._client: Redis = Redis.from_url(
                url,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), retries),
            )
        except ValueError as exc:
            raise ValueError(f"Invalid Redis URL {self.url}: {exc}") from None
        self._release = self._client.register_script(_RELEASE_LOCK)
        self._unreachable: tuple[type[Exception], ...] = (
            RedisConnectionError,
            RedisTimeoutError,
            OSError,
        )
        self._redis_error: type[Exception] = RedisError
        #: What Redis raises when it refuses a command (such as INCRBY on text).
        self.response_error: type[Exception] = ResponseError
        self._flights = SingleFlight()

    def namespace(self, name: str) -> RedisCache:
        """The cache of one namespace (for the plugin service: the consuming plugin's name)."""
        return RedisCache(self, check_namespace(name))

    async def ping(self) -> None:
        """Return if Redis answers; CacheUnavailableError otherwise."""
        with self.errors():
            await self._client.ping()

    async def aclose(self) -> None:
        """Close the connections; the store refuses further use."""
        self.is_closed = True
        await self._client.aclose()

    # -- operations for RedisCache -----------------------------------------------------------

    @property
    def client(self) -> Redis:
        """The redis-py client (bytes in, bytes out)."""
        return self._client

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn the client's connection errors into CacheUnavailableError naming the URL."""
        if self.is_closed:
            raise CacheUnavailableError(
                self.url,
                "the cache plugin stopped and closed this cache",
                hint="Get CACHE from ctx.services again once the cache plugin is active",
            )
        try:
            yield
        except self._unreachable as exc:
            raise_if_cancelled()  # redis-py may have turned a cancellation into this
            raise CacheUnavailableError(self.url, _reason(exc)) from exc
        except self._redis_error as exc:
            raise_if_cancelled()
            raise CacheError(
                f"Redis at {self.url} refused a cache command: {_reason(exc)}."
            ) from exc
        raise_if_cancelled()  # redis-py may have lost a cancellation: honour it here

    def key(self, namespace: str, key: str) -> str:
        """The Redis key of `key` in `namespace`."""
        return f"{self.prefix}:{namespace}:{check_key(key)}"

    def pattern(self, namespace: str) -> str:
        """A SCAN pattern matching every key of `namespace` and nothing else."""
        return _GLOB.sub(r"\\\1", f"{self.prefix}:{namespace}:") + "*"

    def ttl_ms(self, ttl: float | None) -> int | None:
        """The expiry in milliseconds for an explicit `ttl`, or the default one."""
        ttl = check_ttl(ttl)
        if ttl is None:
            ttl = self.default_ttl
        return None if ttl is None else _milliseconds(ttl)

    def encode(self, key: str, value: Any) -> bytes:
        """`value` as JSON, or TypeError naming the key."""
        try:
            return orjson.dumps(value)
        except TypeError as exc:
            raise TypeError(
                f"Cache values in Redis must be JSON-serialisable; {key!r} was given a "
                f"{type(value).__name__} ({exc}). Store plain data, e.g. model.model_dump()."
            ) from None

    def decode(self, redis_key: str, raw: bytes | str) -> Any:
        """The value stored as `raw`, or CacheError if it is not JSON."""
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise CacheError(
                f"Redis key {redis_key!r} at {self.url} holds data that is not JSON, so it "
                f"was not written by the cache. Use another prefix (plugins.cache.key_prefix)."
            ) from None

    async def read(self, redis_key: str) -> Any:
        """The value under `redis_key`, or _MISSING; counts a hit or a miss."""
        with self.errors():
            raw = await self._client.get(redis_key)
        if raw is None:
            self.stats.misses += 1
            return _MISSING
        self.stats.hits += 1
        return self.decode(redis_key, raw)

    async def write(self, redis_key: str, data: bytes, ttl_ms: int | None) -> None:
        """Store encoded `data` under `redis_key`."""
        with self.errors():
            await self._client.set(redis_key, data, px=ttl_ms)

    async def fill(
        self, namespace: str, key: str, factory: Callable[[], Awaitable[T]], ttl: float | None
    ) -> T:
        """Run `factory` once for every caller of this key, in this process and all others."""
        redis_key = self.key(namespace, key)

        async def run() -> T:
            async with self._lock(namespace, key, redis_key) as value:
                if value is not _MISSING:
                    return cast(T, value)
                value = await factory()
                await self.write(redis_key, self.encode(key, value), self.ttl_ms(ttl))
                return value

        return await self._flights.run(redis_key, run)

    @contextlib.asynccontextmanager
    async def _lock(self, namespace: str, key: str, redis_key: str) -> AsyncIterator[Any]:
        """Hold the key's fill lock; yields the value if another process stored it meanwhile.

        Callers that do not get the lock poll for the value until the holder stores it,
        releases the lock (they try to take it), or `lock_timeout` passes (they compute the
        value themselves rather than wait for a holder that may be gone).
        """
        lock_key = f"{self.prefix}:{namespace}#lock:{key}"
        token = secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.lock_timeout
        delay = _FIRST_POLL
        while True:
            value = await self.read(redis_key)
            if value is not _MISSING:
                yield value
                return
            with self.errors():
                is_holder = await self._client.set(
                    lock_key, token, nx=True, px=_milliseconds(self.lock_timeout)
                )
            if is_holder:
                break
            if loop.time() >= give_up_at:
                logger.warning(
                    "Cache key %r of %s: another caller held the fill lock for %g s "
                    "(plugins.cache.lock_timeout); computing the value here too",
                    key,
                    namespace,
                    self.lock_timeout,
                )
                yield _MISSING
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LAST_POLL)
        try:
            # The holder before us may have stored the value between our read and our lock.
            yield await self.read(redis_key)
        finally:
            # A lock we cannot release expires on its own after lock_timeout.
            with contextlib.suppress(CacheError), self.errors():
                await self._release(keys=[lock_key], args=[token])

    async def unlink_namespace(self, namespace: str) -> int:
        """Unlink every key of `namespace`; how many there were."""
        removed = 0
        with self.errors():
            batch: list[bytes] = []
            async for redis_key in self._client.scan_iter(
                match=self.pattern(namespace), count=_SCAN_BATCH
            ):
                raise_if_cancelled()  # each SCAN page is a command of its own
                batch.append(redis_key)
                if len(batch) >= _SCAN_BATCH:
                    removed += await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                removed += await self._client.unlink(*batch)
        return removed


class RedisCache:
    """One namespace of a RedisCacheStore; implements the Cache protocol."""

    __slots__ = ("_name", "_store")

    def __init__(self, store: RedisCacheStore, namespace: str) -> None:
        self._store, self._name = store, namespace

    def __repr__(self) -> str:
        return f"RedisCache(namespace={self._name!r}, url={self._store.url!r})"

    @property
    def namespace(self) -> str:
        """The namespace this cache reads and writes."""
        return self._name

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under `key`, or `default` when it is missing or expired."""
        value = await self._store.read(self._store.key(self._name, key))
        return default if value is _MISSING else value

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store `value` under `key`, replacing any previous value and its expiry."""
        store = self._store
        await store.write(store.key(self._name, key), store.encode(key, value), store.ttl_ms(ttl))

    async def delete(self, key: str) -> bool:
        """Remove `key`; whether it was there."""
        store = self._store
        with store.errors():
            return bool(await store.client.unlink(store.key(self._name, key)))

    async def clear(self) -> int:
        """Remove every key of this namespace (and no other); how many were removed."""
        return await self._store.unlink_namespace(self._name)

    async def get_or_set(
        self, key: str, factory: Callable[[], Awaitable[T]], *, ttl: float | None = None
    ) -> T:
        """The value under `key`; on a miss, run `factory` once across callers and processes."""
        store = self._store
        check_ttl(ttl)
        value = await store.read(store.key(self._name, key))
        if value is not _MISSING:
            return cast(T, value)
        return await store.fill(self._name, key, factory, ttl)

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Add `amount` to the int under `key` (0 when missing); `ttl` applies on creation."""
        store = self._store
        redis_key, ttl_ms = store.key(self._name, key), store.ttl_ms(ttl)
        check_amount(amount)
        with store.errors():
            try:
                if ttl_ms is None:
                    return int(await store.client.incrby(redis_key, amount))
                # Create the key with its expiry first, atomically with the increment, so
                # the TTL is set once and later increments keep it.
                async with store.client.pipeline(transaction=True) as pipe:
                    pipe.set(redis_key, b"0", px=ttl_ms, nx=True)
                    pipe.incrby(redis_key, amount)
                    _, total = await pipe.execute()
                return int(total)
            except store.response_error as exc:
                if "not an integer" not in str(exc):
                    raise
                raise TypeError(
                    f"Cache key {key!r} in namespace {self._name!r} holds a value that is "
                    f"not an int, so incr cannot add to it."
                ) from None

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those `keys` that are present."""
        store = self._store
        wanted = list(keys)
        if not wanted:
            return {}
        redis_keys = [store.key(self._name, key) for key in wanted]
        with store.errors():
            raws = await store.client.mget(redis_keys)
        found: dict[str, Any] = {}
        for key, redis_key, raw in zip(wanted, redis_keys, raws, strict=True):
            if raw is None:
                store.stats.misses += 1
            else:
                store.stats.hits += 1
                found[key] = store.decode(redis_key, raw)
        return found

    async def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        """Store several values with the same `ttl`, in one round trip."""
        store = self._store
        ttl_ms = store.ttl_ms(ttl)
        encoded = [(store.key(self._name, k), store.encode(k, v)) for k, v in items.items()]
        if not encoded:
            return
        with store.errors():
            async with store.client.pipeline(transaction=False) as pipe:
                for redis_key, data in encoded:
                    pipe.set(redis_key, data, px=ttl_ms)
                await pipe.execute()

"""Rate-limit buckets in Redis: one limit shared by every process of the application.

`RedisRateLimitStore` implements `nexus.http.rate_limit.RateLimitStore` with the same GCRA
semantics as the in-memory store. One Lua script reads and updates a bucket atomically
(EVALSHA, loading the script again if the server lost it), and each key expires when its
bucket would be full again, so idle keys cost nothing.

Time comes from the caller (`now`), as for the memory store: keep the instances' clocks in
sync (NTP); a clock that is off by `d` seconds lets that instance's callers burst `d * rate`
requests more (or fewer) than the others.

When Redis fails, the store fails *open* by default: the request is allowed as if its bucket
were full, a warning is logged at most once per `warn_interval` seconds, and Redis is left
alone for `retry_interval` seconds so an unreachable server adds no latency to every request.
Losing the limiter must not take the API down with it; monitoring Redis is the operator's job.
With `fail_open=False` every failure raises `RateLimitUnavailableError` instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from nexus.errors import NexusError
from nexus.http.rate_limit import Decision, gcra
from nexus.redis.client import (
    describe_error,
    open_redis,
    raise_if_cancelled,
    redact_url,
    unreachable_errors,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("nexus.redis")

#: The start of every bucket key unless configured: `<prefix>:<bucket>`.
DEFAULT_PREFIX: Final = "nexus:ratelimit"

# GCRA, as nexus.http.rate_limit.gcra computes it, on the TAT stored at KEYS[1].
# ARGV: now, interval (= 1 / rate) and burst, as exact decimal strings. Returns the TAT the
# decision was made on (the stored one, or now for a fresh bucket) with 17 significant digits,
# so the caller recomputes the very same decision from it with the same float arithmetic.
# A refused request leaves the bucket unchanged; an allowed one stores the new TAT with an
# expiry at the instant the bucket is full again.
_GCRA: Final = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then
    tat = now
end
local new_tat = tat + interval
if now >= new_tat - burst * interval then
    local ttl = math.ceil((new_tat - now) * 1000)
    redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', string.format('%d', ttl))
end
return string.format('%.17g', tat)
"""


class RateLimitUnavailableError(NexusError, ConnectionError):
    """The rate-limit store could not decide (Redis unreachable or refusing the script)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(
            f"The rate-limit store at {url} cannot decide: {reason}. Check that Redis runs "
            f"and is reachable from this host."
        )


class RedisRateLimitStore:
    """GCRA buckets in Redis, shared by every process that uses the same server and prefix.

    Args:
        url: `redis://[[user]:password@]host[:port][/db]`, `rediss://...` or `unix://...`;
            or pass a ready `client` instead.
        prefix: the start of every key (`<prefix>:<bucket>`), to share a database safely.
        timeout: seconds to connect and to wait for each answer: it is added to a request
            whenever Redis is slow, so keep it short.
        fail_open: allow requests while Redis fails (the default), or raise
            RateLimitUnavailableError.
        retry_interval: after a failure, seconds during which Redis is not asked again.
        warn_interval: the least seconds between two warnings about failures.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 0.5,
        fail_open: bool = True,
        retry_interval: float = 1.0,
        warn_interval: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if url is not None and client is not None:
            raise ValueError("RedisRateLimitStore takes a Redis url or a client, not both.")
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"The rate-limit key prefix must be non-empty, no spaces: {prefix!r}.")
        if timeout <= 0 or retry_interval < 0 or warn_interval < 0:
            raise ValueError(
                f"timeout must be > 0 and the intervals >= 0, got timeout={timeout}, "
                f"retry_interval={retry_interval}, warn_interval={warn_interval}."
            )
        self._owns_client = client is None
        if client is None:
            if url is None:
                raise ValueError("RedisRateLimitStore needs a Redis url or a client.")
            # No retries: a retry doubles the latency a failing Redis adds to a request.
            client = open_redis(url, timeout=timeout, retries=0, who="The Redis rate-limit store")
        self.url: Final = redact_url(url) if url is not None else _describe(client)
        self.prefix: Final = prefix
        self.fail_open: Final = fail_open
        self.retry_interval: Final = retry_interval
        self.warn_interval: Final = warn_interval
        self._client: Redis = client
        self._script = client.register_script(_GCRA)
        self._monotonic = monotonic
        from redis.exceptions import RedisError

        self._errors: tuple[type[Exception], ...] = (RedisError, *unreachable_errors())
        self._skip_until = 0.0
        self._next_warning = 0.0
        self._failures = 0  # since the last warning
        self.last_error: str | None = None
        """Why the last call failed, or None once Redis answers again."""

    @property
    def is_available(self) -> bool:
        """Whether the last call to Redis succeeded (True before the first one)."""
        return self.last_error is None

    async def hit(self, key: str, *, rate: float, burst: int, now: float) -> Decision:
        """Count one request against ``key``'s bucket at ``now`` (seconds) and decide on it."""
        if self.last_error is not None and self._monotonic() < self._skip_until:
            return self._unavailable(rate, burst, now, None)
        try:
            raw = await self._script(
                keys=[f"{self.prefix}:{key}"], args=[repr(now), repr(1.0 / rate), burst]
            )
        except self._errors as exc:
            raise_if_cancelled()
            return self._unavailable(rate, burst, now, exc)
        raise_if_cancelled()  # redis-py may have lost a cancellation: honour it here
        if self.last_error is not None:
            logger.info("The rate-limit store at %s answers again; limits apply.", self.url)
            self.last_error, self._failures = None, 0
        return gcra(float(raw), rate=rate, burst=burst, now=now)[0]

    def _unavailable(
        self, rate: float, burst: int, now: float, exc: BaseException | None
    ) -> Decision:
        moment = self._monotonic()
        if exc is not None:
            self.last_error = describe_error(exc)
            self._skip_until = moment + self.retry_interval
        self._failures += 1
        reason = self.last_error or "unknown error"
        if moment >= self._next_warning:
            self._next_warning = moment + self.warn_interval
            consequence = (
                "letting requests through unlimited"
                if self.fail_open
                else "refusing to decide (fail_open is off)"
            )
            logger.warning(
                "The rate-limit store at %s failed %d time(s) since the last warning (%s); "
                "%s until it answers again.",
                self.url,
                self._failures,
                reason,
                consequence,
            )
            self._failures = 0
        if not self.fail_open:
            raise RateLimitUnavailableError(self.url, reason) from exc
        # As if the bucket were full: the caller's headers stay truthful about the limit.
        return gcra(now, rate=rate, burst=burst, now=now)[0]

    async def ping(self) -> None:
        """Return if Redis answers; RateLimitUnavailableError otherwise."""
        try:
            await self._client.ping()
        except self._errors as exc:
            raise RateLimitUnavailableError(self.url, describe_error(exc)) from exc

    async def aclose(self) -> None:
        """Close the connections, if this store opened them."""
        if self._owns_client:
            await self._client.aclose()


def _describe(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"redis://{host}:{port}/{kwargs.get('db', 0)}"

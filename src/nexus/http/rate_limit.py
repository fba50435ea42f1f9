"""Rate limiting per user or client IP: GCRA buckets, 429 problems and RateLimit-* headers."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Final, NamedTuple, Protocol

from nexus.http.identity import get_client_host, identify_user
from nexus.http.problems import send_problem
from nexus.http.response_headers import add_headers
from nexus.http.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("nexus.http")

DEFAULT_EXEMPT_PATHS: Final = ("/livez", "/readyz", "/metrics")

KeyFunction = Callable[[Scope], str | None]
"""Return the bucket a request counts against, or None to let it through unlimited."""


class Decision(NamedTuple):
    """The outcome of one hit on a bucket."""

    is_allowed: bool
    limit: int
    """The burst: how many requests a full bucket allows at once."""
    remaining: int
    """Requests still allowed right now."""
    reset_after: float
    """Seconds until the bucket is full again."""
    retry_after: float
    """Seconds until the next request would be allowed (0 when this one was)."""


class RateLimitStore(Protocol):
    """Where buckets live: this process (MemoryRateLimitStore) or a shared server."""

    async def hit(self, key: str, *, rate: float, burst: int, now: float) -> Decision:
        """Count one request against ``key``'s bucket at ``now`` (seconds) and decide on it."""
        ...


def gcra(tat: float, *, rate: float, burst: int, now: float) -> tuple[Decision, float]:
    """Decide one request by the generic cell rate algorithm; return it and the new TAT.

    ``tat`` (theoretical arrival time) is the only state per key: the instant at which the
    bucket would be full again. A fresh key has ``tat <= now``.
    """
    interval = 1.0 / rate
    if tat < now:
        tat = now
    new_tat = tat + interval
    allow_at = new_tat - burst * interval
    # tuple.__new__ skips NamedTuple's Python-level __new__: a third of this function's cost.
    if now < allow_at:
        return _decision(Decision, (False, burst, 0, tat - now, allow_at - now)), tat
    remaining = int((now - allow_at) / interval + 1e-9)
    return _decision(Decision, (True, burst, remaining, new_tat - now, 0.0)), new_tat


_decision = tuple.__new__

# Header values of the counts most responses carry, encoded once.
_CACHED_NUMBERS: Final = 1024
_NUMBERS: Final = tuple(str(number).encode() for number in range(_CACHED_NUMBERS))


class MemoryRateLimitStore:
    """Buckets in a dict, for one process; idle keys are evicted and the size is capped.

    A key is idle once its bucket is full again, which is the same as never having been
    seen. Past ``max_keys`` the least recently used bucket is dropped (so its owner starts
    afresh): memory stays bounded even when every request comes from a new address.
    """

    def __init__(self, *, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._tats: dict[str, float] = {}  # insertion order is least recently used first
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._tats)

    async def hit(self, key: str, *, rate: float, burst: int, now: float) -> Decision:
        """Count one request against ``key``'s bucket at ``now`` and decide on it."""
        return self.hit_nowait(key, rate=rate, burst=burst, now=now)

    def hit_nowait(self, key: str, *, rate: float, burst: int, now: float) -> Decision:
        """`hit`, without a coroutine: the store never waits for anything."""
        tats = self._tats
        decision, tat = gcra(tats.pop(key, now), rate=rate, burst=burst, now=now)
        tats[key] = tat
        if now >= self._next_sweep or len(tats) > self.max_keys:
            self._evict(now)
        return decision

    def _evict(self, now: float) -> None:
        tats = self._tats
        self._next_sweep = now + 1.0
        while len(tats) > self.max_keys:
            del tats[next(iter(tats))]
        # Oldest first; stop at the first busy bucket: the ones behind it were used later and
        # get their turn at a later sweep.
        idle = []
        for key, tat in tats.items():
            if tat > now:
                break
            idle.append(key)
        for key in idle:
            del tats[key]


def key_by_user_or_ip(scope: Scope) -> str | None:
    """Bucket a signed-in user by id and anybody else by client IP (the default key)."""
    user = identify_user(scope)
    if user is not None:
        return "user:" + user
    host = get_client_host(scope)
    return None if host is None else "ip:" + host


class RateLimitMiddleware:
    """Limit each key to ``rate`` requests a second on average, with bursts up to ``burst``.

    Every limited response carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and
    ``RateLimit-Reset`` (seconds); a refused request gets a 429 problem with ``Retry-After``.
    Paths in ``exempt_paths`` (exact match) and requests whose key is None are not limited.
    If the store fails (say its server is down), the request is let through and the failure
    logged: losing the limiter must not take the API down with it.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rate: float,
        burst: int,
        store: RateLimitStore | None = None,
        key: KeyFunction = key_by_user_or_ip,
        exempt_paths: Iterable[str] = DEFAULT_EXEMPT_PATHS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(
                f"Rate limit needs rate > 0 and burst >= 1, got rate={rate}, burst={burst}."
            )
        self.app = app
        self.rate = rate
        self.burst = burst
        self.store: RateLimitStore = store if store is not None else MemoryRateLimitStore()
        self.key = key
        self.exempt_paths = frozenset(exempt_paths)
        self.clock = clock
        self._limit_header = (b"ratelimit-limit", str(burst).encode())
        # The in-memory store decides synchronously: awaiting it would only add a coroutine
        # to every request. A subclass that overrides `hit` is awaited like any other store.
        self._hit_nowait = (
            self.store.hit_nowait
            if isinstance(self.store, MemoryRateLimitStore)
            and type(self.store).hit is MemoryRateLimitStore.hit
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        key = self.key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        try:
            if self._hit_nowait is not None:
                decision = self._hit_nowait(key, rate=self.rate, burst=self.burst, now=self.clock())
            else:
                decision = await self.store.hit(
                    key, rate=self.rate, burst=self.burst, now=self.clock()
                )
        except Exception:  # a store may fail in any way: fail open
            logger.warning("Rate limit store failed; letting the request through", exc_info=True)
            await self.app(scope, receive, send)
            return

        remaining, reset = decision.remaining, math.ceil(decision.reset_after)
        headers = (
            self._limit_header,
            (
                b"ratelimit-remaining",
                _NUMBERS[remaining] if remaining < _CACHED_NUMBERS else str(remaining).encode(),
            ),
            (
                b"ratelimit-reset",
                _NUMBERS[reset] if reset < _CACHED_NUMBERS else str(reset).encode(),
            ),
        )
        if not decision.is_allowed:
            retry_after = max(1, math.ceil(decision.retry_after))
            await send_problem(
                send,
                429,
                headers=((b"retry-after", str(retry_after).encode()), *headers),
                detail=f"Too many requests. Retry in {retry_after} s.",
            )
            return

        if add_headers(scope, headers):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

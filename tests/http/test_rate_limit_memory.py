"""The in-memory store's synchronous path through RateLimitMiddleware, and its header values."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI

from nexus.http.rate_limit import Decision, MemoryRateLimitStore, RateLimitMiddleware

Connect = Callable[..., httpx.AsyncClient]


def clock() -> float:
    return 1_000.0


class RefusingStore(MemoryRateLimitStore):
    """A memory store whose `hit` a subclass replaced: it refuses everything."""

    async def hit(self, key: str, *, rate: float, burst: int, now: float) -> Decision:
        return Decision(False, burst, 0, 5.0, 5.0)


async def test_hit_nowait_decides_as_hit_does() -> None:
    """The synchronous twin makes the same decisions, from the same buckets, as `hit`."""
    store, twin = MemoryRateLimitStore(), MemoryRateLimitStore()
    for now in (10.0, 10.1, 10.2, 10.3, 12.0, 12.0, 30.0):
        expected = await store.hit("ip:1", rate=1.0, burst=2, now=now)
        assert twin.hit_nowait("ip:1", rate=1.0, burst=2, now=now) == expected


async def test_a_subclass_that_overrides_hit_is_still_asked(app: FastAPI, connect: Connect) -> None:
    """A memory store subclass with its own `hit` decides, not the built-in buckets."""
    limited = RateLimitMiddleware(app, rate=100.0, burst=100, store=RefusingStore(), clock=clock)
    async with connect(limited) as client:
        response = await client.get("/hello")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"


async def test_large_counts_are_sent_exactly(app: FastAPI, connect: Connect) -> None:
    """Remaining and reset values beyond the pre-encoded range are reported exactly."""
    limited = RateLimitMiddleware(app, rate=0.001, burst=3000, clock=clock)
    async with connect(limited) as client:
        first, second = await client.get("/hello"), await client.get("/hello")
    assert (first.headers["ratelimit-remaining"], first.headers["ratelimit-reset"]) == (
        "2999",
        "1000",
    )
    assert (second.headers["ratelimit-remaining"], second.headers["ratelimit-reset"]) == (
        "2998",
        "2000",
    )
    assert first.headers["ratelimit-limit"] == "3000"

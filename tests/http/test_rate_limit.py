"""Rate limiting per user or IP, with 429 problems and RateLimit-* headers."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from nexus.http.rate_limit import Decision, MemoryRateLimitStore, RateLimitMiddleware
from nexus.http.types import ASGIApp, Receive, Scope, Send

Connect = Callable[..., httpx.AsyncClient]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _authenticating(app: ASGIApp) -> ASGIApp:
    """Stand-in for an auth layer: the X-User header names the signed-in user."""

    async def authenticate(scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope["headers"]:
            if name == b"x-user":
                scope.setdefault("state", {})["user"] = {"id": value.decode()}
        await app(scope, receive, send)

    return authenticate


def _limited(app: FastAPI, clock: Clock, **options: object) -> RateLimitMiddleware:
    return RateLimitMiddleware(app, rate=1.0, burst=3, clock=clock, **options)  # type: ignore[arg-type]


async def test_burst_then_429_with_retry_after(app: FastAPI, connect: Connect) -> None:
    """After `burst` requests the next is a 429 problem with Retry-After and RateLimit-*."""
    async with connect(_limited(app, Clock())) as client:
        allowed = [await client.get("/hello") for _ in range(3)]
        refused = await client.get("/hello")
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["ratelimit-limit"] == "3"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-reset"] == "3"
    assert refused.json()["detail"] == "Too many requests. Retry in 1 s."


async def test_allowed_responses_count_down(app: FastAPI, connect: Connect) -> None:
    """Every limited response tells how many requests remain and when the bucket is full."""
    async with connect(_limited(app, Clock())) as client:
        responses = [await client.get("/hello") for _ in range(3)]
    assert [r.headers["ratelimit-limit"] for r in responses] == ["3", "3", "3"]
    assert [r.headers["ratelimit-remaining"] for r in responses] == ["2", "1", "0"]
    assert [r.headers["ratelimit-reset"] for r in responses] == ["1", "2", "3"]


async def test_bucket_refills_over_time(app: FastAPI, connect: Connect) -> None:
    """One request a second comes back at rate=1 after the bucket ran dry."""
    clock = Clock()
    async with connect(_limited(app, clock)) as client:
        for _ in range(3):
            await client.get("/hello")
        assert (await client.get("/hello")).status_code == 429
        clock.now += 1.0
        assert (await client.get("/hello")).status_code == 200
        assert (await client.get("/hello")).status_code == 429


async def test_each_ip_has_its_own_bucket(app: FastAPI, connect: Connect) -> None:
    """A client that exhausted its bucket does not slow down another address."""
    stack = _limited(app, Clock())
    async with connect(stack, client=("198.51.100.1", 1)) as first:
        statuses = [(await first.get("/hello")).status_code for _ in range(4)]
    async with connect(stack, client=("198.51.100.2", 1)) as second:
        other = await second.get("/hello")
    assert statuses == [200, 200, 200, 429]
    assert other.status_code == 200


async def test_signed_in_users_are_limited_per_user_not_per_ip(
    app: FastAPI, connect: Connect
) -> None:
    """Users behind one address have separate buckets; one user is one bucket across addresses."""
    stack = _authenticating(_limited(app, Clock()))
    async with connect(stack, client=("198.51.100.1", 1)) as office:
        alice = [
            (await office.get("/hello", headers={"X-User": "alice"})).status_code for _ in range(4)
        ]
        bob = await office.get("/hello", headers={"X-User": "bob"})
    async with connect(stack, client=("198.51.100.9", 1)) as home:
        alice_at_home = await home.get("/hello", headers={"X-User": "alice"})
    assert alice == [200, 200, 200, 429]
    assert bob.status_code == 200
    assert alice_at_home.status_code == 429


async def test_exempt_paths_are_not_limited(connect: Connect) -> None:
    """Health and metrics endpoints are never refused and carry no RateLimit headers."""
    app = FastAPI()

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    async with connect(_limited(app, Clock())) as client:
        responses = [await client.get("/livez") for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert "ratelimit-limit" not in responses[-1].headers


async def test_requests_without_a_key_are_not_limited(app: FastAPI, connect: Connect) -> None:
    """A key function returning None lets the request through unlimited."""
    stack = _limited(app, Clock(), key=lambda scope: None)
    async with connect(stack) as client:
        statuses = [(await client.get("/hello")).status_code for _ in range(5)]
    assert statuses == [200] * 5


async def test_a_failing_store_lets_requests_through(
    app: FastAPI, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """If the store raises, the request is served and a warning logged (fail open)."""

    class DownStore:
        async def hit(self, key: str, *, rate: float, burst: int, now: float) -> Decision:
            raise ConnectionError("redis is down")

    with caplog.at_level(logging.WARNING, logger="nexus.http"):
        async with connect(_limited(app, Clock(), store=DownStore())) as client:
            response = await client.get("/hello")
    assert response.status_code == 200
    assert "Rate limit store failed" in caplog.text


async def test_memory_store_evicts_idle_keys() -> None:
    """A bucket that has refilled is forgotten at the next sweep."""
    store = MemoryRateLimitStore()
    await store.hit("ip:a", rate=1.0, burst=2, now=0.0)
    await store.hit("ip:b", rate=1.0, burst=2, now=0.5)
    assert len(store) == 2
    await store.hit("ip:c", rate=1.0, burst=2, now=1.2)
    assert len(store) == 2  # a (full again at 1.0) evicted; b (full at 1.5) kept
    decision = await store.hit("ip:a", rate=1.0, burst=2, now=1.3)
    assert decision.remaining == 1


async def test_memory_store_is_capped() -> None:
    """Past max_keys the least recently used bucket is dropped."""
    store = MemoryRateLimitStore(max_keys=2)
    for key in ("a", "b", "c"):
        await store.hit(key, rate=0.001, burst=1, now=0.0)
    assert len(store) == 2
    assert (await store.hit("a", rate=0.001, burst=1, now=0.0)).is_allowed
    assert not (await store.hit("c", rate=0.001, burst=1, now=0.0)).is_allowed


def test_invalid_rate_is_refused() -> None:
    """A zero rate or burst is reported at construction."""
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1, got rate=0, burst=5"):
        RateLimitMiddleware(FastAPI(), rate=0, burst=5)

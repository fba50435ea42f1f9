"""Rate-limit buckets in Redis: GCRA like the memory store, shared by every process."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from redis.asyncio import Redis

from nexus import Plugin, PluginContext
from nexus.errors import ConfigError
from nexus.http.rate_limit import MemoryRateLimitStore
from nexus.plugins.auth import AuthPlugin, AuthSettings
from nexus.plugins.database import DatabasePlugin
from nexus.redis import RateLimitUnavailableError, RedisRateLimitStore
from nexus.testing import build_config, create_test_app, serve
from nexus.testing.servers import RedisServer, start_redis
from tests.conftest import builtin_plugin


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own."""
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client of the session's Redis, to look at the keys."""
    redis = Redis.from_url(redis_server.url)
    yield redis
    await redis.aclose()


@pytest.fixture
async def stores(
    redis_server: RedisServer, prefix: str
) -> AsyncIterator[list[RedisRateLimitStore]]:
    """Two stores on the same Redis and prefix: two processes of one application."""
    made = [RedisRateLimitStore(redis_server.url, prefix=prefix) for _ in range(2)]
    yield made
    for store in made:
        await store.aclose()


async def test_decisions_match_the_memory_store(stores: list[RedisRateLimitStore]) -> None:
    """Any sequence of hits gets exactly the decisions the in-memory GCRA store makes."""
    memory, redis = MemoryRateLimitStore(), stores[0]
    rng = random.Random(7)
    now = 1_700_000_000.0
    for _ in range(300):
        now += rng.choice((0.0, 0.001, 0.05, 0.3, 1.7))
        key = rng.choice(("ip:10.0.0.1", "user:ada", "ip:::1"))
        rate, burst = (3.0, 5) if key.startswith("ip") else (0.5, 2)
        expected = await memory.hit(key, rate=rate, burst=burst, now=now)
        assert await redis.hit(key, rate=rate, burst=burst, now=now) == expected


async def test_two_stores_share_one_limit(stores: list[RedisRateLimitStore]) -> None:
    """Hits through two stores (two processes) count against the same bucket."""
    first, second = stores
    now = 1_000.0
    assert (await first.hit("ip:1.2.3.4", rate=1.0, burst=3, now=now)).remaining == 2
    assert (await second.hit("ip:1.2.3.4", rate=1.0, burst=3, now=now)).remaining == 1
    assert (await first.hit("ip:1.2.3.4", rate=1.0, burst=3, now=now)).is_allowed
    refused = await second.hit("ip:1.2.3.4", rate=1.0, burst=3, now=now)
    assert not refused.is_allowed and refused.retry_after == 1.0
    assert (await first.hit("ip:1.2.3.4", rate=1.0, burst=3, now=now + 1.0)).is_allowed


async def test_another_process_shares_the_limit(redis_server: RedisServer, prefix: str) -> None:
    """A bucket emptied by a separate Python process refuses this process's next request."""
    code = textwrap.dedent(
        f"""
        import asyncio, json
        from nexus.redis import RedisRateLimitStore

        async def main():
            store = RedisRateLimitStore({redis_server.url!r}, prefix={prefix!r})
            seen = [(await store.hit("user:7", rate=0.1, burst=4, now=50.0)).remaining
                    for _ in range(4)]
            await store.aclose()
            print(json.dumps(seen))

        asyncio.run(main())
        """
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    assert child.returncode == 0
    assert json.loads(out) == [3, 2, 1, 0]
    store = RedisRateLimitStore(redis_server.url, prefix=prefix)
    try:
        refused = await store.hit("user:7", rate=0.1, burst=4, now=50.0)
    finally:
        await store.aclose()
    assert not refused.is_allowed and refused.retry_after == pytest.approx(10.0)


async def test_keys_expire_when_the_bucket_is_full_again(
    stores: list[RedisRateLimitStore], client: Redis, prefix: str
) -> None:
    """A bucket's key lives until its bucket is full again, then disappears by itself."""
    store = stores[0]
    await store.hit("ip:slow", rate=0.01, burst=10, now=5.0)
    assert 0 < await client.pttl(f"{prefix}:ip:slow") <= 100_000
    await store.hit("ip:fast", rate=1000.0, burst=1, now=5.0)
    async with asyncio.timeout(5):
        while await client.exists(f"{prefix}:ip:fast"):  # noqa: ASYNC110 - Redis expires it
            await asyncio.sleep(0.005)
    assert await client.exists(f"{prefix}:ip:slow") == 1


async def test_refused_hits_leave_the_bucket_unchanged(
    stores: list[RedisRateLimitStore], client: Redis, prefix: str
) -> None:
    """Hammering an empty bucket does not push its refill further away."""
    store = stores[0]
    await store.hit("k", rate=1.0, burst=1, now=10.0)
    stored = await client.get(f"{prefix}:k")
    for _ in range(5):
        assert not (await store.hit("k", rate=1.0, burst=1, now=10.5)).is_allowed
    assert await client.get(f"{prefix}:k") == stored
    assert (await store.hit("k", rate=1.0, burst=1, now=11.0)).is_allowed


async def test_script_is_loaded_again_after_redis_forgot_it(
    stores: list[RedisRateLimitStore], client: Redis
) -> None:
    """After SCRIPT FLUSH (a restarted or failed-over Redis), hits keep working."""
    store = stores[0]
    assert (await store.hit("k", rate=1.0, burst=2, now=1.0)).remaining == 1
    await client.script_flush()
    assert (await store.hit("k", rate=1.0, burst=2, now=1.0)).remaining == 0


async def test_a_corrupt_bucket_counts_as_fresh(
    stores: list[RedisRateLimitStore], client: Redis, prefix: str
) -> None:
    """A key holding something else than a time is treated as an unused bucket."""
    await client.set(f"{prefix}:k", "not a number")
    assert (await stores[0].hit("k", rate=1.0, burst=3, now=1.0)).remaining == 2


async def test_unreachable_redis_fails_open_and_warns_once(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down, requests are allowed, one warning names the URL; limits resume after."""
    store = RedisRateLimitStore(own_redis.url, retry_interval=0.0)
    try:
        await store.hit("k", rate=1.0, burst=1, now=1.0)
        own_redis.stop()
        with caplog.at_level(logging.WARNING, logger="nexus.redis"):
            decisions = [await store.hit("k", rate=1.0, burst=1, now=1.0) for _ in range(5)]
        assert all(d.is_allowed and d.remaining == 0 for d in decisions)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert f"127.0.0.1:{own_redis.port}" in warnings[0]
        assert "letting requests through unlimited" in warnings[0]
        assert not store.is_available
        with pytest.raises(RateLimitUnavailableError, match="cannot decide"):
            await store.ping()
        restarted = start_redis(own_redis.port)
        try:
            assert (await store.hit("k", rate=1.0, burst=1, now=1.0)).is_allowed
            assert not (await store.hit("k", rate=1.0, burst=1, now=1.0)).is_allowed
            assert store.is_available
        finally:
            restarted.stop()
    finally:
        await store.aclose()


async def test_redis_is_left_alone_for_the_retry_interval(own_redis: RedisServer) -> None:
    """After a failure, hits are decided without asking Redis until the retry interval ends."""
    moment = [0.0]
    store = RedisRateLimitStore(own_redis.url, retry_interval=10.0, monotonic=lambda: moment[0])
    try:
        own_redis.stop()
        assert (await store.hit("k", rate=1.0, burst=1, now=1.0)).is_allowed
        restarted = start_redis(own_redis.port)
        try:
            moment[0] = 5.0  # within the interval: Redis is not asked, so nothing is counted
            assert (await store.hit("k", rate=1.0, burst=1, now=1.0)).is_allowed
            assert (await store.hit("k", rate=1.0, burst=1, now=1.0)).is_allowed
            moment[0] = 10.0
            assert (await store.hit("k", rate=1.0, burst=1, now=1.0)).is_allowed
            assert not (await store.hit("k", rate=1.0, burst=1, now=1.0)).is_allowed
        finally:
            restarted.stop()
    finally:
        await store.aclose()


async def test_fail_closed_raises_with_the_reason(own_redis: RedisServer) -> None:
    """With fail_open=False a failure raises RateLimitUnavailableError, password masked."""
    url = f"redis://:s3cret@127.0.0.1:{own_redis.port}/0"
    store = RedisRateLimitStore(url, fail_open=False)
    own_redis.stop()
    try:
        with pytest.raises(RateLimitUnavailableError) as caught:
            await store.hit("k", rate=1.0, burst=1, now=1.0)
        assert "s3cret" not in str(caught.value)
        assert f"redis://:**********@127.0.0.1:{own_redis.port}/0" in str(caught.value)
        with pytest.raises(RateLimitUnavailableError):  # within the retry interval too
            await store.hit("k", rate=1.0, burst=1, now=1.0)
    finally:
        await store.aclose()


async def test_store_accepts_a_ready_client(client: Redis, prefix: str) -> None:
    """A store on a caller's client leaves that client open when it closes."""
    store = RedisRateLimitStore(client=client, prefix=prefix)
    assert (await store.hit("k", rate=1.0, burst=2, now=1.0)).remaining == 1
    await store.aclose()
    assert await client.ping()
    assert store.url.startswith("redis://127.0.0.1:")


def test_store_arguments_are_checked() -> None:
    """Contradictory or impossible arguments are refused when the store is made."""
    with pytest.raises(ValueError, match="url or a client"):
        RedisRateLimitStore()
    with pytest.raises(ValueError, match="not a Redis URL"):
        RedisRateLimitStore("http://:pw@example.com")
    with pytest.raises(ValueError, match="no spaces"):
        RedisRateLimitStore("redis://127.0.0.1", prefix="a b")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        RedisRateLimitStore("redis://127.0.0.1", timeout=0)


class Hello(Plugin):
    manifest = {"name": "hello", "version": "1.0"}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.get("/")
        async def hello() -> dict[str, str]:
            return {"hello": "world"}

        ctx.http.include_router(router)


async def test_apps_with_the_redis_store_share_the_http_limit(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """Two application instances configured with store: redis enforce one limit together."""
    limits = {
        "rate": 0.01,
        "burst": 3,
        "store": "redis",
        "redis_url": redis_server.url,
        "redis_prefix": prefix,
    }
    config = {"data_dir": str(tmp_path), "http": {"rate_limit": limits}}
    first = create_test_app(plugins=[Hello()], config=config)
    second = create_test_app(plugins=[Hello()], config=config)
    async with serve(first) as one, serve(second) as two:
        statuses = [
            (await client.get("/api/hello/")).status_code for client in (one, two, one, two)
        ]
        refused = await one.get("/api/hello/")
    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429 and refused.headers["retry-after"] == "100"


def test_redis_store_needs_a_url() -> None:
    """store: redis without redis_url (or with another scheme) is a configuration error."""
    with pytest.raises(ConfigError, match=r"http\.rate_limit: .*store 'redis' needs redis_url"):
        build_config({"http": {"rate_limit": {"store": "redis"}}}, http=True)
    with pytest.raises(ConfigError, match="redis_url must start with redis://"):
        build_config(
            {"http": {"rate_limit": {"store": "redis", "redis_url": "http://x"}}}, http=True
        )


async def test_login_throttling_is_shared_by_instances_with_a_redis_url(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """With plugins.auth.redis_url, failed logins on one instance count on the others."""

    def instance(name: str) -> Any:
        auth = {
            "redis_url": redis_server.url,
            "login_burst": 2,
            "password_hashing": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1},
        }
        return create_test_app(
            plugins=[builtin_plugin(DatabasePlugin), builtin_plugin(AuthPlugin)],
            config={"data_dir": str(tmp_path / name), "plugins": {"auth": auth}},
        )

    user = f"nobody-{uuid.uuid4().hex}"  # bucket keys do not collide with other tests
    form = {"grant_type": "password", "username": user, "password": "wrong password here"}
    async with serve(instance("a")) as one, serve(instance("b")) as two:
        statuses = [
            (await client.post("/api/auth/token", data=form)).status_code
            for client in (one, two, one)
        ]
    assert statuses == [401, 401, 429]


def test_auth_refuses_a_redis_url_of_another_scheme() -> None:
    """plugins.auth.redis_url must be a Redis URL."""
    with pytest.raises(ValueError, match="must start with redis://"):
        AuthSettings(redis_url="http://127.0.0.1")  # type: ignore[arg-type]

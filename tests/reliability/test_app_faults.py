"""Faulty event handlers and a lost Redis, through the real HTTP application.

The kernel-level guarantees (retries, timeouts, bounded mailboxes) are proven in
tests/kernel/test_events.py; the transport's side of a Redis outage in tests/redis/. Here the
same faults happen under a running app: what a user sees over HTTP, what the admin API shows,
what is logged, and that no event a handler acknowledged is lost or handled twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from nexus import Plugin, PluginContext
from nexus.http.app import NexusApp
from nexus.http.problems import PROBLEM_CONTENT_TYPE
from nexus.kernel.events import Event
from nexus.plugins.admin import AdminPlugin
from nexus.plugins.auth import AUTH
from nexus.plugins.auth.plugin import AuthPlugin
from nexus.plugins.cache import CachePlugin, PluginCache
from nexus.plugins.database import DatabasePlugin
from nexus.testing import create_test_app, serve
from nexus.testing.servers import RedisServer, start_redis
from tests.conftest import builtin_plugin

PASSWORD = "correct horse battery staple"
FAST_HASHING = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
HANG_TIMEOUT = 0.5  # seconds the hanging handler gets per attempt (the checks between take ms)
#: Short, so the faults play out within a test; retried twice, so three attempts each.
EVENTS = {"retries": 2, "retry_delay": 0.01, "queue_size": 4, "publish_timeout": 0.3}


class Worker(Plugin):
    """Publishes on request; one handler records every event, the others misbehave."""

    manifest = {
        "name": "worker",
        "version": "1.0.0",
        "description": "Event handlers that raise, hang and crawl",
        "optional": {"cache": ">=1.0"},
        "permissions": ["events:publish:work.*", "events:subscribe:work.*", "services:use:cache"],
    }

    def __init__(self) -> None:
        self.seen: list[str] = []  # ids, once per successful handling by `record`
        self.hangs = 0  # attempts the hanging handler started
        self.cancelled = 0  # ... and that were cancelled
        self.crawled: list[int] = []
        self.gate: asyncio.Event | None = None  # opened by the test to let `crawl` go on
        self.computed = 0  # values the cached route computed

    async def setup(self, ctx: PluginContext[Any]) -> None:
        self.gate = asyncio.Event()
        router = APIRouter()

        @router.post("/publish/{topic}")
        async def publish(topic: str, count: int = 1) -> dict[str, list[str]]:
            ids = [(await ctx.events.publish(f"work.{topic}", {"n": n})).id for n in range(count)]
            return {"ids": ids}

        @router.get("/ping")
        async def ping() -> dict[str, bool]:
            return {"pong": True}

        @router.get("/cached/{key}")
        async def cached(key: str, cache: PluginCache) -> dict[str, Any]:
            async def compute() -> int:
                self.computed += 1
                return self.computed

            return {"value": await cache.get_or_set(key, compute, ttl=60)}

        ctx.http.include_router(router)
        ctx.events.subscribe("work.*", self.record)
        ctx.events.subscribe("work.fail", self.explode)
        ctx.events.subscribe("work.hang", self.hang, timeout=HANG_TIMEOUT)
        ctx.events.subscribe("work.slow", self.crawl)

    async def record(self, event: Event) -> None:
        self.seen.append(event.id)

    async def explode(self, event: Event) -> None:
        raise ValueError("refused on purpose")

    async def hang(self, event: Event) -> None:
        self.hangs += 1
        try:
            await asyncio.Event().wait()  # nobody ever sets it
        finally:
            self.cancelled += 1

    async def crawl(self, event: Event) -> None:
        assert self.gate is not None
        await self.gate.wait()
        self.crawled.append(event.data["n"])


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Wait (10 s at most) until `check()` holds."""
    try:
        async with asyncio.timeout(10):
            while True:
                result = check()
                if await result if isinstance(result, Awaitable) else result:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def messages(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[str]:
    """The messages `logger` logged at exactly `level`."""
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == level]


@pytest.fixture
async def admin_app(tmp_path: Path) -> AsyncIterator[tuple[Worker, httpx.AsyncClient, str]]:
    """The worker beside database, auth and admin (SQLite); an admin's bearer token."""
    worker = Worker()
    app = create_test_app(
        plugins=[
            builtin_plugin(DatabasePlugin),
            builtin_plugin(AuthPlugin),
            builtin_plugin(AdminPlugin),
            worker,
        ],
        config={
            "data_dir": str(tmp_path),
            "events": EVENTS,
            "plugins": {"auth": {"password_hashing": FAST_HASHING}},
            "http": {"rate_limit": {"enabled": False}},
        },
    )
    async with serve(app) as client:
        await app.kernel.services.get(AUTH).create_user("root", PASSWORD, roles=["admin"])
        token = await client.post(
            "/api/auth/token",
            data={"grant_type": "password", "username": "root", "password": PASSWORD},
        )
        assert token.status_code == 200, token.text
        yield worker, client, token.json()["access_token"]


async def dead_letters(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    """GET /admin/api/dead-letters as the admin."""
    answer = await client.get(
        "/admin/api/dead-letters", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    letters: list[dict[str, Any]] = answer.json()["dead_letters"]
    return letters


async def test_a_raising_handler_is_retried_dead_lettered_and_shown_to_admins(
    admin_app: tuple[Worker, httpx.AsyncClient, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that always raises: 200 to the publisher, 3 logged attempts, a dead letter in
    /admin/api/dead-letters; the other handler of the event and every route are unaffected."""
    worker, client, token = admin_app
    caplog.set_level(logging.INFO)
    published = await client.post("/api/worker/publish/fail")
    assert published.status_code == 200, published.text
    [event_id] = published.json()["ids"]
    await eventually(lambda: _has_letter(client, token, event_id), "the dead letter")
    [letter] = await dead_letters(client, token)
    assert letter["subscriber"] == "worker:Worker.explode"
    assert letter["error"] == "ValueError: refused on purpose"
    assert letter["attempts"] == 3
    assert letter["event"]["type"] == "work.fail"
    assert letter["event"]["source"] == "worker"
    assert worker.seen == [event_id]  # the recording handler got it, once
    assert (await client.get("/api/worker/ping")).json() == {"pong": True}
    retries = messages(caplog, "nexus.events", logging.WARNING)
    assert [m.split(", retrying")[0] for m in retries] == [
        f"Handler 'Worker.explode' of plugin 'worker' failed on event 'work.fail' ({event_id}), "
        f"attempt {n} of 3"
        for n in (1, 2)
    ]
    [final] = messages(caplog, "nexus.events", logging.ERROR)
    assert final.startswith(
        f"Handler 'Worker.explode' of plugin 'worker' failed on event 'work.fail' ({event_id}) "
        f"after 3 attempt(s), dead-lettered as {letter['id']}: ValueError: refused on purpose"
    )
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert {getattr(r, "plugin", None) for r in failures} == {"worker"}


async def _has_letter(client: httpx.AsyncClient, token: str, event_id: str) -> bool:
    return any(letter["event"]["id"] == event_id for letter in await dead_letters(client, token))


async def test_a_hanging_handler_times_out_without_holding_the_request_or_other_handlers(
    admin_app: tuple[Worker, httpx.AsyncClient, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that never returns: the publishing request answers while it hangs, later
    events reach the other handler, and each attempt is cancelled, then dead-lettered."""
    worker, client, token = admin_app
    caplog.set_level(logging.WARNING)
    published = await client.post("/api/worker/publish/hang")
    assert published.status_code == 200, published.text
    [hung_id] = published.json()["ids"]
    assert worker.cancelled < 3  # answered long before the handler was given up on
    await eventually(lambda: worker.hangs == 1, "the handler hanging")
    later = await client.post("/api/worker/publish/other", params={"count": 3})
    later_ids = later.json()["ids"]
    await eventually(lambda: set(later_ids) <= set(worker.seen), "later events handled")
    assert not await dead_letters(client, token)  # ... and reached `record` meanwhile
    await eventually(lambda: _has_letter(client, token, hung_id), "the dead letter")
    [letter] = await dead_letters(client, token)
    assert letter["subscriber"] == "worker:Worker.hang"
    assert letter["error"] == (
        f"TimeoutError: Handler 'worker:Worker.hang' did not finish within {HANG_TIMEOUT} s, "
        f"so it was cancelled"
    )
    assert (worker.hangs, worker.cancelled) == (3, 3)  # each attempt was cancelled
    assert Counter(worker.seen) == dict.fromkeys([hung_id, *later_ids], 1)
    assert len(messages(caplog, "nexus.events", logging.WARNING)) == 2
    [final] = messages(caplog, "nexus.events", logging.ERROR)
    assert f"'Worker.hang' of plugin 'worker' failed on event 'work.hang' ({hung_id})" in final


async def test_a_slow_handler_holds_a_bounded_mailbox_and_then_refuses_with_503(
    admin_app: tuple[Worker, httpx.AsyncClient, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A stalled handler: publishes return while its mailbox (4) has room; past that a publish
    waits publish_timeout, then answers 503 problem; once it resumes, every accepted event is
    handled in order and nothing else is, and other handlers never waited."""
    worker, client, _ = admin_app
    assert worker.gate is not None
    caplog.set_level(logging.WARNING)
    accepted = await client.post("/api/worker/publish/slow", params={"count": 5})
    assert accepted.status_code == 200, accepted.text  # one in the handler, four queued
    await eventually(lambda: len(worker.seen) == 5, "the other handler getting all five")
    refused = await client.post("/api/worker/publish/slow")
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["detail"].startswith("The server is too busy")
    assert "traceback" not in refused.json()
    assert len(worker.seen) == 6  # the full mailbox held back only the slow handler
    assert (await client.get("/api/worker/ping")).status_code == 200
    worker.gate.set()
    await eventually(lambda: len(worker.crawled) == 5, "the slow handler catching up")
    after = await client.post("/api/worker/publish/slow", params={"count": 2})
    assert after.status_code == 200
    await eventually(lambda: len(worker.crawled) == 7, "events published after it caught up")
    assert worker.crawled == [0, 1, 2, 3, 4, 0, 1]
    [warning] = messages(caplog, "nexus.http", logging.WARNING)
    assert "queue stayed full (4 events) for 0.3 s" in warning


def redis_app(url: str, tmp_path: Path, worker: Worker) -> NexusApp:
    """The worker and the cache on Redis: events, cache and rate limits all at `url`."""
    return create_test_app(
        plugins=[builtin_plugin(CachePlugin), worker],
        config={
            "data_dir": str(tmp_path),
            "events": {
                **EVENTS,
                "transport": "redis",
                "redis_url": url,
                "redis_timeout": 0.3,
                "redis_block": 0.2,
                "redis_claim_idle": 0.5,
            },
            "plugins": {"cache": {"backend": "redis", "url": url, "timeout": 0.3}},
            "http": {
                "rate_limit": {
                    "store": "redis",
                    "redis_url": url,
                    "redis_timeout": 0.3,
                    "burst": 1000,
                    "rate": 1000,
                }
            },
        },
    )


async def test_redis_lost_and_back_fails_clearly_then_recovers_without_a_restart(
    own_redis: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis (events, cache, rate limits) stopped: publishing and cached routes answer 503
    problems, /readyz names the event transport, rate limiting fails open; restarted on its
    port: the same app publishes, handles, caches and is ready again, and the events handled
    before the outage are not handled again."""
    worker = Worker()
    caplog.set_level(logging.INFO)
    async with serve(redis_app(own_redis.url, tmp_path, worker)) as client:
        before = await client.post("/api/worker/publish/before", params={"count": 3})
        before_ids = before.json()["ids"]
        await eventually(lambda: set(before_ids) <= set(worker.seen), "events before")
        assert (await client.get("/api/worker/cached/k")).json() == {"value": 1}

        own_redis.stop()
        caplog.clear()
        down = await client.post("/api/worker/publish/during")
        assert down.status_code == 503, down.text
        assert down.headers["content-type"] == PROBLEM_CONTENT_TYPE
        assert down.headers["retry-after"] == "5"
        assert "event transport is unavailable" in down.json()["detail"]
        cached = await client.get("/api/worker/cached/k")
        assert cached.status_code == 503, cached.text
        assert cached.headers["content-type"] == PROBLEM_CONTENT_TYPE
        assert cached.headers["retry-after"] == "5"
        assert cached.json()["detail"].startswith("A service this request needs is unreachable")
        assert "traceback" not in cached.json()
        ping = await client.get("/api/worker/ping")  # the rate limiter lets it through
        assert ping.status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["events"]["healthy"] is False
        assert f"Redis at {own_redis.url} is unreachable" in ready.json()["events"]["detail"]
        assert ready.json()["plugins"]["cache"]["healthy"] is False
        outage = "\n".join(r.getMessage() for r in caplog.records)
        assert "is unreachable" in outage  # the transport's reader noticed
        assert "The rate-limit store at" in outage and "letting requests through" in outage
        assert "Traceback" not in caplog.text

        restarted = start_redis(own_redis.port)
        try:

            async def is_ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(is_ready, "/readyz answering 200 again")
            after = await client.post("/api/worker/publish/after", params={"count": 3})
            assert after.status_code == 200, after.text
            after_ids = after.json()["ids"]
            await eventually(lambda: set(after_ids) <= set(worker.seen), "events after")
            await asyncio.sleep(0.6)  # past redis_claim_idle: a redelivery would be here now
            assert Counter(worker.seen) == dict.fromkeys([*before_ids, *after_ids], 1)
            cached = await client.get("/api/worker/cached/k")
            assert cached.json() == {"value": 2}  # a new Redis: recomputed, and stored again
            assert (await client.get("/api/worker/cached/k")).json() == {"value": 2}
            assert "is reachable again" in caplog.text
        finally:
            restarted.stop()

"""The admin plugin's parts on their own: session expiry, the event feed, metrics, the graph."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from nexus.http.problems import ProblemError
from nexus.kernel.events import Event
from nexus.kernel.lifecycle import PluginState
from nexus.kernel.records import PluginStatus
from nexus.plugins.admin.access import check_origin
from nexus.plugins.admin.feed import EventFeed
from nexus.plugins.admin.graph import dependency_graph, start_order
from nexus.plugins.admin.metrics import MetricsSampler, RequestStats, percentile
from nexus.plugins.admin.session import SessionStore, digest
from nexus.testing import FakeClock

MIGRATION = (
    Path(__file__).parents[3] / "src/nexus/plugins/admin/migrations/0001_create_admin_sessions.py"
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A SQLite database with the admin_sessions table."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'admin.db'}")
    spec = importlib.util.spec_from_file_location("admin_migration", MIGRATION)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    async with engine.begin() as conn:
        await migration.upgrade(conn)
    yield engine
    await engine.dispose()


class Clock:
    """A settable wall clock."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_sessions_end_after_idle_time_and_lifetime(engine: AsyncEngine) -> None:
    """A session lives while used within the idle timeout, and never past its lifetime."""
    clock = Clock()
    store = SessionStore(engine, idle_timeout=600, lifetime=3600, clock=clock)
    token, session = await store.create("u1", "ada", client_ip="127.0.0.1")
    assert session.id == digest(token) and token not in session.id
    for _ in range(5):  # used every 9 minutes: alive past the 10-minute idle timeout
        clock.now += 540
        assert await store.find(session.id) is not None
    clock.now += 601
    assert await store.find(session.id) is None  # idle too long: gone
    _, busy = await store.create("u1", "ada")
    for _ in range(6):
        clock.now += 590
        assert await store.find(busy.id) is not None
    clock.now += 590  # 3,540 s + 590 s: past the one-hour lifetime
    assert await store.find(busy.id) is None


async def test_pruning_deletes_only_ended_sessions(engine: AsyncEngine) -> None:
    """prune() removes sessions past either timeout and keeps live ones."""
    clock = Clock()
    store = SessionStore(engine, idle_timeout=600, lifetime=3600, clock=clock)
    _, old = await store.create("u1", "ada")
    clock.now += 500
    _, fresh = await store.create("u2", "bob")
    clock.now += 200
    assert await store.prune() == 1
    assert await store.find(fresh.id) is not None
    assert await store.delete(old.id) is False


def event(topic: str, data: Any = None) -> Event:
    """An event as the bus would deliver it."""
    return Event(
        id=f"e-{topic}", type=topic, source="test", time=0.0, data=data, correlation_id=None
    )


async def test_feed_keeps_the_latest_and_cuts_large_data() -> None:
    """The ring keeps `size` items; data past the limit is replaced by a preview."""
    feed = EventFeed(size=3, data_limit=64)
    for n in range(5):
        await feed.add(event(f"t.{n}", {"n": n}))
    await feed.add(event("big.one", {"text": "x" * 500}))
    kept = feed.recent("**")
    assert [item.type for item in kept] == ["t.3", "t.4", "big.one"]
    big = orjson.loads(kept[-1].json)
    assert big["data"]["truncated"] is True and big["data"]["bytes"] > 500
    assert len(big["data"]["preview"]) == 64
    assert orjson.loads(kept[0].json)["data"] == {"n": 3}


async def test_feed_streams_get_matching_items_and_skip_when_full() -> None:
    """A stream gets only its pattern's events; a full queue skips the oldest and counts it."""
    feed = EventFeed(size=10)
    stream = feed.open("a.*", size=2)
    for topic in ("a.1", "b.1", "a.2", "a.3"):
        await feed.add(event(topic))
    first = await stream.next(1)
    assert first is not None and first.type == "a.2"
    assert stream.skipped == 1
    feed.close_streams()
    last = await stream.next(1)
    assert last is not None and last.type == "a.3"
    assert await stream.next(1) is None
    assert feed.stream_count == 0


async def test_feed_resumes_after_an_id_of_the_same_feed_only() -> None:
    """`after` skips what the client saw; an id from before a restart is ignored."""
    feed = EventFeed()
    for topic in ("x.1", "x.2", "x.3"):
        await feed.add(event(topic))
    [first, *_] = feed.recent("**")
    assert [i.type for i in feed.recent("**", after=first.id)] == ["x.2", "x.3"]
    assert len(feed.recent("**", after="other-1")) == 3


def test_percentile_is_nearest_rank() -> None:
    """p95 of 1..100 is 95; of one value, that value."""
    assert percentile([float(n) for n in range(100, 0, -1)], 0.95) == 95.0
    assert percentile([7.0], 0.95) == 7.0


class FakePlatform:
    """Event counters as the platform reports them."""

    def __init__(self) -> None:
        self.published = 0

    def event_stats(self) -> dict[str, Any]:
        counters = {"delivered": 0, "failed": 0, "timed_out": 0, "dead_lettered": 0}
        return {"a": {"published": self.published, **counters}}


def test_sampler_turns_counts_into_rates_per_second() -> None:
    """Requests, errors and events in a window become per-second rates over its length."""
    clock = FakeClock()
    platform = FakePlatform()
    stats = RequestStats()
    sampler = MetricsSampler(stats, platform, window=2, clock=clock.time)  # type: ignore[arg-type]
    for status in (200, 200, 500, 200):
        stats.observe("notes", status, 0.010)
    platform.published = 8
    clock.advance(2.0)
    sample = sampler.sample()
    assert sample.requests == {"notes": 2.0}
    assert sample.errors == {"notes": 0.5}
    assert sample.p95_ms == {"notes": 10.0}
    assert sample.events["published"] == 4.0
    clock.advance(1.0)
    sampler.sample()
    clock.advance(1.0)
    sampler.sample()
    series = sampler.series()
    assert len(series["time"]) == 2  # the window keeps two samples
    assert series["requests_per_second"]["total"] == [0.0, 0.0]
    assert series["error_rate"] == [None, None]


def status(name: str, requires: dict[str, str] | None = None, **optional: str) -> PluginStatus:
    """An active plugin's status."""
    return PluginStatus(
        name=name,
        state=PluginState.ACTIVE,
        version="1.0",
        description="",
        origin="test",
        enabled=True,
        requires=requires or {},
        optional=dict(optional),
        failure=None,
        blocked_reason=None,
        boot_seconds=None,
        last_error=None,
    )


def test_start_order_breaks_ties_by_name_and_puts_cycles_last() -> None:
    """Dependencies first, ties by name; plugins in a cycle come last."""
    statuses = [
        status("web", {"db": ""}),
        status("db"),
        status("cache"),
        status("a", {"b": ""}),
        status("b", {"a": ""}),
    ]
    assert start_order(statuses) == ["cache", "db", "web", "a", "b"]
    graph = dependency_graph(statuses)
    layers = {node["id"]: node["layer"] for node in graph["nodes"]}
    assert layers["db"] == 0 and layers["web"] == 1


def test_origin_check_ignores_default_ports_and_refuses_others() -> None:
    """https://host:443 is https://host; another host or scheme is refused."""
    scope: dict[str, Any] = {
        "scheme": "https",
        "headers": [(b"host", b"admin.example.com"), (b"origin", b"https://admin.example.com:443")],
    }
    check_origin(scope, ())
    scope["headers"][1] = (b"origin", b"http://admin.example.com")
    with pytest.raises(ProblemError, match="is not this dashboard's origin"):
        check_origin(scope, ())
    check_origin(scope, ("http://admin.example.com",))


def test_public_names_are_pinned() -> None:
    """The package exports exactly the names other plugins and tests rely on, sorted."""
    import nexus.plugins.admin as admin

    assert admin.__all__ == [
        "ACCESS_PERMISSION",
        "COOKIE",
        "CSRF_HEADER",
        "AdminPlugin",
        "AdminSettings",
    ]
    assert admin.ACCESS_PERMISSION == "admin:access"

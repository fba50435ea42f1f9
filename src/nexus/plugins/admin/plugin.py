"""AdminPlugin: the web dashboard at /admin and its JSON API at /admin/api."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Final

from nexus.kernel.context import PluginContext
from nexus.kernel.platform import PLATFORM
from nexus.kernel.plugin import Health, Plugin
from nexus.plugins.admin.access import admin_gate
from nexus.plugins.admin.api import Dashboard, build_api
from nexus.plugins.admin.cluster import CLUSTER
from nexus.plugins.admin.feed import EventFeed
from nexus.plugins.admin.metrics import MetricsSampler, RequestStats
from nexus.plugins.admin.operations import Operations
from nexus.plugins.admin.pages import build_pages, deny_callback
from nexus.plugins.admin.session import AdminSessionMiddleware, Sessions, SessionStore
from nexus.plugins.admin.settings import AdminSettings

MIGRATIONS: Final = Path(__file__).parent / "migrations"
MOUNT: Final = "/admin"
#: How often sessions past their timeouts are deleted (seconds).
PRUNE_INTERVAL: Final = 600.0


class AdminPlugin(Plugin):
    """Serves the dashboard: plugins, dependencies, events, metrics, configuration, audit log.

    It subscribes to every topic (`events:subscribe:**`) because the live event view shows
    whatever the application publishes: a narrower grant would hide events from the people
    who operate it. The events reach only signed-in admins.
    """

    Config = AdminSettings

    def __init__(self) -> None:
        self.feed: EventFeed | None = None
        self.sampler: MetricsSampler | None = None
        self.operations: Operations | None = None
        self._store: SessionStore | None = None
        self._prune_error: str | None = None

    async def setup(self, ctx: PluginContext[AdminSettings]) -> None:
        """Migrate the sessions table, then register the middleware, routes and tasks."""
        from nexus.plugins.auth import AUTH
        from nexus.plugins.database import DATABASE

        settings = ctx.config
        platform = ctx.services.get(PLATFORM)
        auth = ctx.services.get(AUTH)
        database = ctx.services.get(DATABASE)
        await database.migrate(ctx.name, MIGRATIONS)

        store = self._store = SessionStore(
            database.engine,
            idle_timeout=settings.session_idle_timeout.total_seconds(),
            lifetime=settings.session_lifetime.total_seconds(),
        )
        sessions = Sessions(store, auth, cache_ttl=settings.session_cache_ttl)
        feed = self.feed = EventFeed(
            size=settings.recent_events, data_limit=settings.event_data_limit
        )
        ctx.on_cleanup(feed.close_streams)
        # Broadcast: with a cluster transport, every instance's dashboard sees every event.
        ctx.events.subscribe("**", feed.add, mode="broadcast")

        stats = RequestStats()
        sampler = self.sampler = MetricsSampler(stats, platform, window=settings.metrics_window)
        ctx.tasks.spawn(sampler.run, name="metrics")
        ctx.tasks.spawn(self._prune_sessions, name="prune_sessions")

        def cluster() -> Any | None:
            return ctx.services.get_optional(CLUSTER)

        operations = self.operations = Operations(
            name=ctx.name,
            platform=platform,
            events=ctx.events,
            cluster=cluster,
            before_restart=feed.close_streams,
            logger=ctx.logger,
        )
        dashboard = Dashboard(ctx, platform, feed, sampler, operations, sessions)
        gate = admin_gate(allowed_origins=settings.allowed_origins, deny=deny_callback(operations))
        pages = build_pages(
            auth=auth,
            sessions=sessions,
            operations=operations,
            allowed_origins=settings.allowed_origins,
            session_lifetime=settings.session_lifetime.total_seconds(),
            is_production=ctx.is_production,
            logger=ctx.logger,
        )
        # After the auth plugin's middleware (position 0): a bearer token it accepted wins.
        ctx.http.add_middleware(
            AdminSessionMiddleware, stage="authentication", position=10, sessions=sessions
        )
        ctx.http.observe_requests(stats.record)
        ctx.http.include_router(pages, at=MOUNT)
        ctx.http.include_router(build_api(dashboard, gate), at=MOUNT)

    async def _prune_sessions(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            if self._store is None:
                return
            try:
                await self._store.prune()
            except Exception as exc:  # noqa: BLE001 - the database may be down a while; retry later
                self._prune_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            else:
                self._prune_error = None

    async def teardown(self, ctx: PluginContext[AdminSettings]) -> None:
        """End the live streams."""
        if self.feed is not None:
            self.feed.close_streams()

    async def health(self) -> Health:
        """Unhealthy while expired sessions cannot be deleted (the database is failing)."""
        if self._prune_error is not None:
            return Health.unhealthy(f"cannot prune admin sessions: {self._prune_error}")
        streams = self.feed.stream_count if self.feed is not None else 0
        return Health.healthy(f"{streams} live event stream(s)", streams=streams)

"""The dashboard's JSON API under /admin/api: admins only, every change CSRF-checked."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from nexus.errors import EventError, PluginNotFoundError
from nexus.http.problems import ProblemError, ServiceUnavailableError
from nexus.kernel.services import ServiceKey
from nexus.kernel.topics import validate_pattern
from nexus.plugins.admin.access import session_of
from nexus.plugins.admin.cluster import CLUSTER, instances
from nexus.plugins.admin.graph import dependency_graph
from nexus.plugins.admin.session import caller_of

if TYPE_CHECKING:
    from nexus.kernel.context import PluginContext
    from nexus.kernel.platform import Platform
    from nexus.plugins.admin.feed import EventFeed
    from nexus.plugins.admin.metrics import MetricsSampler
    from nexus.plugins.admin.operations import Operations
    from nexus.plugins.admin.session import Sessions
    from nexus.plugins.admin.settings import AdminSettings

#: The audit plugin's service, looked up by name (`services:use:audit`).
AUDIT: Final = ServiceKey[Any]("audit")
_MONITORING: Final = "monitoring"


@dataclass(frozen=True, slots=True)
class Dashboard:
    """What the API routes work with."""

    ctx: PluginContext[AdminSettings]
    platform: Platform
    feed: EventFeed
    sampler: MetricsSampler
    operations: Operations
    sessions: Sessions

    def audit(self) -> Any | None:
        """The audit log service, when the audit plugin runs."""
        return self.ctx.services.get_optional(AUDIT)

    def cluster(self) -> Any | None:
        """The cluster service, when a cluster plugin runs."""
        return self.ctx.services.get_optional(CLUSTER)

    def features(self) -> dict[str, bool]:
        """Which optional sections the dashboard can show."""
        active = {s.name for s in self.platform.statuses() if s.state.value == "active"}
        return {
            "audit": self.ctx.services.has(AUDIT),
            "cluster": self.ctx.services.has(CLUSTER),
            "monitoring": _MONITORING in active,
        }


def _not_found(name: str, exc: PluginNotFoundError) -> ProblemError:
    return ProblemError(404, str(exc), plugin=name)


def build_api(dashboard: Dashboard, gate: Callable[..., Any]) -> APIRouter:
    """The routes of /admin/api, each behind `gate` (the admin check)."""
    router = APIRouter(prefix="/api", dependencies=[Depends(gate)])
    platform, feed, operations = dashboard.platform, dashboard.feed, dashboard.operations
    settings = dashboard.ctx.config

    @router.get("/session", summary="Who is signed in, and what the dashboard can show")
    async def session(request: Request) -> dict[str, Any]:
        caller = caller_of(request.scope)  # the router's gate let an admin through
        current = session_of(request.scope)
        return {
            "username": getattr(caller, "username", None),
            "kind": getattr(caller, "kind", None),
            "csrf_token": current.csrf_token if current is not None else None,
            "expires_at": None
            if current is None
            else current.ends_at(settings.session_idle_timeout.total_seconds()),
            "features": dashboard.features(),
            "environment": platform.environment,
            "version": platform.version,
        }

    @router.get("/plugins", summary="Every plugin: state, version, health, failures, dependencies")
    async def plugins() -> dict[str, Any]:
        statuses = platform.statuses()
        health = await platform.health()
        services: dict[str, list[str]] = {}
        for info in platform.services():
            services.setdefault(info.provider, []).append(info.key)
        subscriptions: dict[str, int] = {}
        for sub in platform.subscriptions():
            subscriptions[sub.owner] = subscriptions.get(sub.owner, 0) + 1
        dependents: dict[str, list[str]] = {}
        for status in statuses:
            for dep in [*status.requires, *status.optional]:
                dependents.setdefault(dep, []).append(status.name)
        rows = []
        for status in statuses:
            check = health.get(status.name)
            row = status.to_dict()
            row.update(
                health=None if check is None else {"ok": check.ok, "detail": check.detail},
                dependents=sorted(dependents.get(status.name, [])),
                services=sorted(services.get(status.name, [])),
                subscriptions=subscriptions.get(status.name, 0),
                protected=operations.protected(status.name),
            )
            rows.append(row)
        return {"plugins": rows}

    @router.post("/plugins/{name}/{operation}", summary="Enable, disable or reload a plugin")
    async def operate(name: str, operation: Literal["enable", "disable", "reload"]) -> Response:
        try:
            result = await operations.run(name, operation)
        except PluginNotFoundError as exc:
            raise _not_found(name, exc) from None
        # 202: the operation restarts the dashboard, so it runs after this response.
        return JSONResponse(result, 202 if result["accepted"] else 200)

    @router.get("/graph", summary="The dependency graph: nodes by start order, typed edges")
    async def graph() -> dict[str, Any]:
        return dependency_graph(platform.statuses())

    @router.get("/events", summary="Recent events, oldest first")
    async def recent_events(
        pattern: Annotated[str, Query(max_length=255)] = "**",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        _check_pattern(pattern)
        items = feed.recent(pattern, limit=limit)
        body = b'{"events":[' + b",".join(item.json for item in items) + b"]}"
        return Response(body, media_type="application/json")

    @router.get("/events/stream", summary="Live events (Server-Sent Events)")
    async def stream(
        request: Request,
        pattern: Annotated[str, Query(max_length=255)] = "**",
        last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    ) -> StreamingResponse:
        _check_pattern(pattern)
        if feed.stream_count >= settings.max_streams:
            raise ServiceUnavailableError(
                f"{settings.max_streams} event streams are open already "
                f"(plugins.admin.max_streams); close a dashboard tab or retry later.",
                retry_after=5,
            )
        listener = feed.open(pattern, size=settings.stream_queue)
        current = session_of(request.scope)
        backlog = feed.recent(pattern, limit=50, after=last_event_id)

        async def events() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            ends = loop.time() + settings.stream_lifetime
            try:
                yield b"retry: 2000\n: connected\n\n"
                for kept in backlog:
                    yield _sse(kept.id, kept.json, kind=b"backlog")
                while True:
                    left = ends - loop.time()
                    if left <= 0:
                        break
                    try:
                        item = await listener.next(min(settings.stream_heartbeat, left))
                    except TimeoutError:
                        if current is not None and not await dashboard.sessions.is_live(current):
                            break  # signed out elsewhere
                        yield b": heartbeat\n\n"
                        continue
                    if item is None:
                        break
                    if listener.skipped:
                        skipped, listener.skipped = listener.skipped, 0
                        yield b'event: skipped\ndata: {"count":%d}\n\n' % skipped
                    yield _sse(item.id, item.json)
            finally:
                feed.release(listener)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/topics", summary="Event counters per topic")
    async def topics() -> dict[str, Any]:
        stats = platform.event_stats()
        return {"topics": [{"topic": topic, **stats[topic]} for topic in sorted(stats)]}

    @router.get("/dead-letters", summary="Events whose handlers gave up, newest first")
    async def dead_letters() -> dict[str, Any]:
        store = platform.dead_letters
        return {
            "dead_letters": [
                {
                    "id": letter.id,
                    "subscriber": letter.subscriber,
                    "pattern": letter.pattern,
                    "error": letter.error,
                    "attempts": letter.attempts,
                    "time": _iso(letter.time),
                    "event": letter.event.to_dict(),
                }
                for letter in store.list()
            ],
            "dropped": store.dropped,
        }

    @router.post("/dead-letters/{letter_id}/redeliver", summary="Deliver a dead letter again")
    async def redeliver(letter_id: str) -> dict[str, Any]:
        resource = f"dead_letter:{letter_id}"
        try:
            report = await platform.dead_letters.redeliver(letter_id)
        except EventError as exc:
            await operations.announce(
                "dead_letter.redeliver", resource=resource, outcome="failure", error=str(exc)
            )
            raise ProblemError(404, str(exc)) from None
        outcome = "success" if report.failed == 0 and report.dropped == 0 else "failure"
        await operations.announce(
            "dead_letter.redeliver",
            resource=resource,
            outcome=outcome,
            event_type=report.event.type,
            delivered=report.delivered,
            failed=report.failed,
        )
        return {
            "id": letter_id,
            "outcome": outcome,
            "delivered": report.delivered,
            "failed": report.failed,
            "dropped": report.dropped,
        }

    @router.delete("/dead-letters/{letter_id}", summary="Discard a dead letter")
    async def discard(letter_id: str) -> dict[str, Any]:
        if not platform.dead_letters.discard(letter_id):
            raise ProblemError(404, f"No dead letter with id {letter_id!r}.")
        await operations.announce(
            "dead_letter.discard", resource=f"dead_letter:{letter_id}", outcome="success"
        )
        return {"id": letter_id, "discarded": True}

    @router.get("/metrics", summary="Per-second samples for the charts")
    async def metrics(
        seconds: Annotated[int | None, Query(ge=1, le=3600)] = None,
    ) -> dict[str, Any]:
        return dashboard.sampler.series(seconds)

    @router.get("/config", summary="The effective configuration, secrets redacted")
    async def config() -> dict[str, Any]:
        return {"config": platform.config(), "environment": platform.environment}

    @router.get("/audit", summary="Audit entries, newest first (the audit plugin's log)")
    async def audit(
        actor: Annotated[str | None, Query(max_length=255)] = None,
        action: Annotated[str | None, Query(max_length=255)] = None,
        outcome: Literal["success", "failure", "denied"] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> dict[str, Any]:
        log = dashboard.audit()
        if log is None:
            raise ServiceUnavailableError(
                "The audit log is not available: the audit plugin is not running."
            )
        found = await log.query(
            actor=actor or None,
            action=action or None,
            outcome=outcome,
            since=since,
            until=until,
            limit=limit,
            before_id=before_id,
        )
        return {
            "entries": [entry.as_dict() for entry in found],
            "next_before_id": found[-1].id if len(found) == limit else None,
        }

    @router.get("/cluster", summary="The instances of the cluster, when a cluster plugin runs")
    async def cluster() -> dict[str, Any]:
        service = dashboard.cluster()
        if service is None:
            raise ProblemError(404, "No cluster plugin is running: this instance runs on its own.")
        return {"instances": await instances(service)}

    return router


def _check_pattern(pattern: str) -> None:
    try:
        validate_pattern(pattern)
    except EventError as exc:
        raise ProblemError(422, str(exc)) from None


def _sse(item_id: str, data: bytes, *, kind: bytes = b"event") -> bytes:
    """One SSE message; "backlog" ones were published before the stream (re)connected."""
    return b"id: " + item_id.encode() + b"\nevent: " + kind + b"\ndata: " + data + b"\n\n"


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat().replace("+00:00", "Z")

"""The audit plugin: records security-relevant events and explicit entries in the database."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from nexus.kernel.context import PluginContext
from nexus.kernel.events import Event
from nexus.kernel.plugin import Health, Plugin
from nexus.plugins.audit.entries import row_from_event
from nexus.plugins.audit.log import AUDIT, AuditLog, BatchWriter
from nexus.plugins.audit.routes import build_router
from nexus.plugins.audit.store import AuditStore
from nexus.plugins.database import DATABASE

#: The events every one of which becomes an entry.
AUDITED_EVENTS: Final = ("auth.**", "security.**", "nexus.plugin.*", "admin.**")


class AuditSettings(BaseModel):
    """`plugins.audit` in nexus.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention_days: int | None = Field(
        90, ge=1, description="Delete entries older than this many days; null keeps them all."
    )
    prune_interval: float = Field(
        86400.0, gt=0, description="Seconds between two prunings of old entries (daily)."
    )
    max_batch: int = Field(500, ge=1, le=10_000, description="Most entries written at once.")


class AuditPlugin(Plugin):
    """Keeps the audit log: who did what, when, how it ended, and in which request."""

    Config = AuditSettings

    def __init__(self) -> None:
        self._writer: BatchWriter | None = None

    async def setup(self, ctx: PluginContext[AuditSettings]) -> None:
        settings = ctx.config
        database = ctx.services.get(DATABASE)
        await database.migrate(ctx.name, Path(__file__).parent / "migrations")
        store = AuditStore(database)
        writer = self._writer = BatchWriter(store, max_batch=settings.max_batch)
        ctx.on_cleanup(writer.close)

        def log_for(consumer: str) -> AuditLog:
            return AuditLog(store, writer, source=consumer)

        ctx.services.provide_scoped(AUDIT, log_for)

        async def record_event(event: Event) -> None:
            # Raising (the database is down) makes the bus retry, then dead-letter the event.
            await writer.write(row_from_event(event))

        for pattern in AUDITED_EVENTS:
            ctx.events.subscribe(pattern, record_event)
        ctx.http.include_router(build_router(log_for(ctx.name)))

        retention = settings.retention_days
        if retention is not None:
            keep = dt.timedelta(days=retention)

            async def prune() -> None:
                while True:
                    try:
                        removed = await store.prune(dt.datetime.now(dt.UTC) - keep)
                    except Exception:  # the database may be down for a while; try next time
                        ctx.logger.exception("Could not delete audit entries older than %s", keep)
                    else:
                        if removed:
                            ctx.logger.info(
                                "Deleted %d audit entries older than %d days", removed, retention
                            )
                    await asyncio.sleep(settings.prune_interval)

            ctx.tasks.spawn(prune, name="prune")

    async def health(self) -> Health:
        """Unhealthy while entries cannot be written, with the database's reason."""
        writer = self._writer
        if writer is not None and writer.last_error is not None:
            return Health.unhealthy(f"cannot write audit entries: {writer.last_error}")
        return Health.healthy()

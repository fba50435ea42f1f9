"""AuditLog, the service other plugins record and query through, and its batching writer."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from nexus.kernel.correlation import actor as current_actor
from nexus.kernel.correlation import correlation_id
from nexus.kernel.services import ServiceKey
from nexus.plugins.audit.entries import OUTCOMES, AuditEntry, Outcome, make_row
from nexus.plugins.audit.store import AuditStore


class BatchWriter:
    """Writes entries in batches: whatever arrives while a batch is written goes in the next.

    `write` returns once its entry is committed and raises if the batch failed, so an event
    handler that awaits it fails too, and the event bus retries the event (inserts are
    idempotent per event id) rather than losing it.
    """

    def __init__(self, store: AuditStore, *, max_batch: int = 500) -> None:
        self._store = store
        self._max_batch = max_batch
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        """Why the latest batch failed; None once one succeeds."""

    async def write(self, row: dict[str, Any]) -> None:
        """Write one entry (batched with concurrent ones); raises if it could not be written."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((row, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._flush(), name="audit:write")
        await future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                await self._store.insert([row for row, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiter gets the error, to retry
                self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                self.last_error = None
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def close(self) -> None:
        """Wait for the batch being written, if any."""
        if self._task is not None:
            await asyncio.wait([self._task])


class AuditLog:
    """Record audit entries and query them. Get it as `ctx.services.get(AUDIT)`.

    Each plugin gets its own AuditLog, so the entries it records name it as their source.
    """

    def __init__(self, store: AuditStore, writer: BatchWriter, *, source: str) -> None:
        self._store, self._writer = store, writer
        self.source: Final = source

    async def record(
        self,
        *,
        action: str,
        resource: str = "",
        outcome: Outcome = "success",
        actor: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record that `actor` did `action` to `resource`, with `outcome`; returns once stored.

        `actor` defaults to the signed-in user of the current request ("system" outside one);
        the request id is taken from the current request.
        """
        if not action:
            raise ValueError("An audit entry needs an action, e.g. 'notes.note.deleted'.")
        if outcome not in OUTCOMES:
            raise ValueError(
                f"Audit outcome {outcome!r} is not one of {', '.join(sorted(OUTCOMES))}."
            )
        row = make_row(
            time=dt.datetime.now(dt.UTC),
            actor=actor or current_actor.get(),
            action=action,
            resource=resource,
            outcome=outcome,
            request_id=correlation_id.get(),
            source=self.source,
            details=details or {},
        )
        await self._writer.write(row)

    async def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        outcome: Outcome | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        """Entries matching every given filter, newest first.

        `action` matches by prefix ("auth.login" finds auth.login.failed too); `since` is
        inclusive and `until` exclusive (naive datetimes are UTC); `limit` is capped at 1000.
        For the next page pass the last entry's id as `before_id`.
        """
        return await self._store.query(
            actor=actor,
            action=action,
            outcome=outcome,
            since=since,
            until=until,
            limit=limit,
            before_id=before_id,
        )


AUDIT: Final = ServiceKey[AuditLog]("audit", AuditLog)

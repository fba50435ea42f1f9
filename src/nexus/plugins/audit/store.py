"""The `audit_entries` table: batched idempotent inserts, filtered keyset queries, pruning."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from nexus.plugins.audit.entries import AuditEntry, Outcome
from nexus.plugins.database import Database

#: The most entries one query returns.
MAX_LIMIT: Final = 1000


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out, also on SQLite (which stores them without a zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


_metadata = sa.MetaData()
#: The table as migrations/0001_create_audit_entries.py creates it.
audit_entries: Final = sa.Table(
    "audit_entries",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("time", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(255), nullable=False),
    sa.Column("resource", sa.String(512), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(128)),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("event_id", sa.String(64)),
    sa.Column("details", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
)


class AuditStore:
    """Reads and writes audit entries in the application's database."""

    def __init__(self, database: Database) -> None:
        self._database = database
        insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        # An event delivered again (a retry after a lost acknowledgement) is recorded once.
        self._insert = insert(audit_entries).on_conflict_do_nothing(index_elements=["event_id"])

    async def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write `rows` (from `make_row`) in one transaction."""
        if not rows:
            return
        async with self._database.engine.begin() as conn:
            await conn.execute(self._insert, list(rows))

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
        """Entries matching every given filter, newest first (see `AuditLog.query`)."""
        table = audit_entries
        statement = sa.select(table).order_by(table.c.id.desc()).limit(_clamp(limit))
        if actor is not None:
            statement = statement.where(table.c.actor == actor)
        if action:
            statement = statement.where(table.c.action.startswith(action, autoescape=True))
        if outcome is not None:
            statement = statement.where(table.c.outcome == outcome)
        if since is not None:
            statement = statement.where(table.c.time >= as_utc(since))
        if until is not None:
            statement = statement.where(table.c.time < as_utc(until))
        if before_id is not None:
            statement = statement.where(table.c.id < before_id)
        async with self._database.engine.connect() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        return [
            AuditEntry(
                id=int(row["id"]),
                time=row["time"],
                actor=row["actor"],
                action=row["action"],
                resource=row["resource"],
                outcome=cast(Outcome, row["outcome"]),
                request_id=row["request_id"],
                source=row["source"],
                details=row["details"] or {},
            )
            for row in rows
        ]

    async def prune(self, before: dt.datetime) -> int:
        """Delete the entries older than `before`; returns how many went."""
        statement = sa.delete(audit_entries).where(audit_entries.c.time < as_utc(before))
        async with self._database.engine.begin() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount or 0)


def _clamp(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))

"""Create audit_entries: one row per audited action, indexed for the admin's filters."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

metadata = sa.MetaData()

sa.Table(
    "audit_entries",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(255), nullable=False),
    sa.Column("resource", sa.String(512), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("source", sa.String(64), nullable=False),
    # The event's id: a redelivered event is recorded once.
    sa.Column("event_id", sa.String(64), nullable=True),
    sa.Column("details", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.CheckConstraint(
        "outcome IN ('success', 'failure', 'denied')", name="ck_audit_entries_outcome"
    ),
    sa.UniqueConstraint("event_id", name="uq_audit_entries_event_id"),
    # Newest first (by id) within a filter: each index ends with id for keyset pagination.
    sa.Index("ix_audit_entries_time", "time"),
    sa.Index("ix_audit_entries_actor", "actor", "id"),
    sa.Index("ix_audit_entries_action", "action", "id"),
)


async def upgrade(conn: AsyncConnection) -> None:
    await conn.run_sync(metadata.create_all)

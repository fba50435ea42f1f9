"""Create analytics_signups: one row per user and step (created, verified), by day."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

metadata = sa.MetaData()

sa.Table(
    "analytics_signups",
    metadata,
    # One row per user and step: an event delivered twice is counted once.
    sa.Column("step", sa.String(16), primary_key=True),
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.Date(), nullable=False),
    sa.CheckConstraint("step IN ('created', 'verified')", name="ck_analytics_signups_step"),
    sa.Index("ix_analytics_signups_day", "day", "step"),
)


async def upgrade(conn: AsyncConnection) -> None:
    await conn.run_sync(metadata.create_all)

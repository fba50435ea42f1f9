"""Create admin_sessions: one row per signed-in dashboard session, keyed by the cookie's digest."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

metadata = sa.MetaData()

sa.Table(
    "admin_sessions",
    metadata,
    # SHA-256 of the cookie's secret: a leaked table does not let anyone sign in.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("username", sa.String(150), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    # Seconds since the epoch: the same on every dialect, and compared in Python.
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("last_seen_at", sa.Float(), nullable=False),
    sa.Column("expires_at", sa.Float(), nullable=False),
    sa.Column("client_ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(256), nullable=True),
    sa.Index("ix_admin_sessions_expires_at", "expires_at"),
    sa.Index("ix_admin_sessions_user_id", "user_id"),
)


async def upgrade(conn: AsyncConnection) -> None:
    await conn.run_sync(metadata.create_all)

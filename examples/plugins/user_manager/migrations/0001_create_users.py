"""Create user_manager_users: registered people and the state of their email verification."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

metadata = sa.MetaData()

sa.Table(
    "user_manager_users",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
    # The SHA-256 of the emailed token, never the token: a copy of the table verifies nobody.
    sa.Column("verification_hash", sa.String(64), nullable=True),
    sa.Column("verification_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("email", name="uq_user_manager_users_email"),
    sa.UniqueConstraint("verification_hash", name="uq_user_manager_users_verification_hash"),
)


async def upgrade(conn: AsyncConnection) -> None:
    await conn.run_sync(metadata.create_all)

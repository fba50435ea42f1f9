"""Users, roles (seeded with admin = "*"), refresh token families and API keys."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection


def _tables(metadata: sa.MetaData) -> sa.Table:
    """Define this revision's tables (frozen here: later revisions alter, never edit this)."""
    when = sa.DateTime(timezone=True)
    roles = sa.Table(
        "auth_roles",
        metadata,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("permissions", sa.JSON, nullable=False),
        sa.Column("description", sa.String(255), nullable=False, server_default=""),
    )
    sa.Table(
        "auth_users",
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("username", sa.String(150), nullable=False),
        # casefold()ed username: the unique index makes usernames unique ignoring case.
        sa.Column("username_key", sa.String(150), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", when, nullable=False),
    )
    sa.Table(
        "auth_user_roles",
        metadata,
        sa.Column(
            "user_id",
            sa.String(32),
            sa.ForeignKey("auth_users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "role",
            sa.String(64),
            sa.ForeignKey("auth_roles.name", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    sa.Table(
        "auth_refresh_tokens",
        metadata,
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("family_id", sa.String(32), nullable=False, index=True),
        sa.Column(
            "user_id",
            sa.String(32),
            sa.ForeignKey("auth_users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("created_at", when, nullable=False),
        sa.Column("expires_at", when, nullable=False),
        sa.Column("used_at", when, nullable=True),
        sa.Column("revoked_at", when, nullable=True),
    )
    sa.Table(
        "auth_api_keys",
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("prefix", sa.String(16), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column(
            "user_id",
            sa.String(32),
            sa.ForeignKey("auth_users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("expires_at", when, nullable=True),
        sa.Column("revoked_at", when, nullable=True),
    )
    return roles


async def upgrade(conn: AsyncConnection) -> None:
    """Create the auth tables and the admin role."""
    metadata = sa.MetaData()
    roles = _tables(metadata)
    await conn.run_sync(metadata.create_all)
    await conn.execute(
        roles.insert().values(name="admin", permissions=["*"], description="Holds every permission")
    )

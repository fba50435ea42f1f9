"""The auth tables as the current migrations leave them, for queries."""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

metadata: Final = sa.MetaData()
_WHEN: Final = sa.DateTime(timezone=True)

roles: Final = sa.Table(
    "auth_roles",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("permissions", sa.JSON, nullable=False),
    sa.Column("description", sa.String(255), nullable=False),
)

users: Final = sa.Table(
    "auth_users",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("username", sa.String(150), nullable=False),
    sa.Column("username_key", sa.String(150), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("created_at", _WHEN, nullable=False),
)

user_roles: Final = sa.Table(
    "auth_user_roles",
    metadata,
    sa.Column("user_id", sa.String(32), sa.ForeignKey("auth_users.id"), primary_key=True),
    sa.Column("role", sa.String(64), sa.ForeignKey("auth_roles.name"), primary_key=True),
)

refresh_tokens: Final = sa.Table(
    "auth_refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("family_id", sa.String(32), nullable=False),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("auth_users.id"), nullable=False),
    sa.Column("created_at", _WHEN, nullable=False),
    sa.Column("expires_at", _WHEN, nullable=False),
    sa.Column("used_at", _WHEN),
    sa.Column("revoked_at", _WHEN),
)

api_keys: Final = sa.Table(
    "auth_api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("prefix", sa.String(16), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("auth_users.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", _WHEN, nullable=False),
    sa.Column("expires_at", _WHEN),
    sa.Column("revoked_at", _WHEN),
)

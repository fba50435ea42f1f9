"""The auth tables: users, roles, refresh token families and API keys (SQLAlchemy Core)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from nexus.plugins.auth import schema
from nexus.plugins.auth.errors import UnknownRoleError, UserExistsError


def _aware(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; every one stored here is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _maybe_aware(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


@dataclass(frozen=True, slots=True)
class User:
    """A user account (never with its password hash)."""

    id: str
    username: str
    roles: frozenset[str]
    is_active: bool
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "id": self.id,
            "username": self.username,
            "roles": sorted(self.roles),
            "is_active": self.is_active,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Account:
    """A user with the password hash, for verifying a login."""

    user: User
    password_hash: str


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's record (its secret is never stored, only its hash)."""

    id: str
    prefix: str
    name: str
    user_id: str
    scopes: frozenset[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data, without any secret."""
        return {
            "id": self.id,
            "prefix": self.prefix,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """An API key found by its prefix, with the user it acts for."""

    key: ApiKey
    key_hash: str
    user: User


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of presenting a refresh token."""

    outcome: Literal["rotated", "reused", "revoked", "expired", "inactive", "unknown"]
    family_id: str | None = None
    user: User | None = None


def _user(row: Any, roles: Iterable[str | None]) -> User:
    return User(
        id=row.id,
        username=row.username,
        roles=frozenset(r for r in roles if r is not None),
        is_active=bool(row.is_active),
        created_at=_aware(row.created_at),
    )


def _api_key(row: Any) -> ApiKey:
    k = schema.api_keys.c
    return ApiKey(
        id=row._mapping[k.id],
        prefix=row._mapping[k.prefix],
        name=row._mapping[k.name],
        user_id=row._mapping[k.user_id],
        scopes=frozenset(row._mapping[k.scopes]),
        created_at=_aware(row._mapping[k.created_at]),
        expires_at=_maybe_aware(row._mapping[k.expires_at]),
        revoked_at=_maybe_aware(row._mapping[k.revoked_at]),
    )


_USER_WITH_ROLES = sa.select(
    schema.users.c.id,
    schema.users.c.username,
    schema.users.c.is_active,
    schema.users.c.created_at,
    schema.users.c.password_hash,
    schema.user_roles.c.role,
).select_from(schema.users.outerjoin(schema.user_roles))


class AuthStore:
    """Reads and writes the auth tables; each method is one transaction.

    A transaction that writes does so in its first statement: on SQLite a transaction that
    reads first and writes later fails ("database is locked") if another connection
    committed in between, where one that writes first simply waits for the lock.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- roles -------------------------------------------------------------------------------

    async def roles(self) -> dict[str, frozenset[str]]:
        """Every role and its permissions."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(schema.roles.c.name, schema.roles.c.permissions))
            return {row.name: frozenset(row.permissions) for row in rows}

    async def put_role(self, name: str, permissions: Iterable[str], description: str) -> None:
        """Create the role, or replace its permissions."""
        values = {"permissions": sorted(set(permissions)), "description": description}
        async with self.engine.begin() as conn:
            result = await conn.execute(
                schema.roles.update().where(schema.roles.c.name == name).values(**values)
            )
            if result.rowcount == 0:
                await conn.execute(schema.roles.insert().values(name=name, **values))

    async def _check_roles(self, roles: Iterable[str]) -> list[str]:
        """The roles, sorted; UnknownRoleError if one is not defined (read before any write)."""
        wanted = sorted(set(roles))
        if not wanted:
            return wanted
        known = await self.roles()
        if unknown := [r for r in wanted if r not in known]:
            raise UnknownRoleError(unknown, sorted(known))
        return wanted

    # -- users -------------------------------------------------------------------------------

    async def count_users(self) -> int:
        """How many user accounts exist."""
        async with self.engine.connect() as conn:
            count = await conn.scalar(sa.select(sa.func.count()).select_from(schema.users))
            return int(count or 0)

    async def create_user(
        self, username: str, password_hash: str, roles: Iterable[str], *, now: datetime
    ) -> User:
        """Insert a user; UserExistsError when the name is taken, UnknownRoleError for roles."""
        user_id = uuid.uuid4().hex
        wanted = await self._check_roles(roles)
        async with self.engine.begin() as conn:
            try:
                await conn.execute(
                    schema.users.insert().values(
                        id=user_id,
                        username=username,
                        username_key=username.casefold(),
                        password_hash=password_hash,
                        is_active=True,
                        created_at=now,
                    )
                )
            except IntegrityError:
                raise UserExistsError(username) from None
            if wanted:
                await conn.execute(
                    schema.user_roles.insert(), [{"user_id": user_id, "role": r} for r in wanted]
                )
        return User(user_id, username, frozenset(wanted), True, now)

    async def account(self, username: str) -> Account | None:
        """The user named `username` (ignoring case) with the password hash, if any."""
        query = _USER_WITH_ROLES.where(schema.users.c.username_key == username.casefold())
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return None
        return Account(_user(rows[0], (r.role for r in rows)), rows[0].password_hash)

    async def user(self, user_id: str) -> User | None:
        """The user with this id, if any."""
        query = _USER_WITH_ROLES.where(schema.users.c.id == user_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return _user(rows[0], (r.role for r in rows)) if rows else None

    async def users(self) -> list[User]:
        """Every user, by username."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_USER_WITH_ROLES.order_by(schema.users.c.username))).all()
        grouped: dict[str, list[Any]] = {}
        for row in rows:
            grouped.setdefault(row.id, []).append(row)
        return [_user(group[0], (r.role for r in group)) for group in grouped.values()]

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Store a new password hash for the user."""
        async with self.engine.begin() as conn:
            await conn.execute(
                schema.users.update()
                .where(schema.users.c.id == user_id)
                .values(password_hash=password_hash)
            )

    async def set_roles(self, user_id: str, roles: Iterable[str]) -> bool:
        """Replace the user's roles; False when there is no such user."""
        wanted = await self._check_roles(roles)
        if await self.user(user_id) is None:
            return False
        async with self.engine.begin() as conn:
            await conn.execute(
                schema.user_roles.delete().where(schema.user_roles.c.user_id == user_id)
            )
            if wanted:
                await conn.execute(
                    schema.user_roles.insert(), [{"user_id": user_id, "role": r} for r in wanted]
                )
            return True

    async def set_active(self, user_id: str, is_active: bool, *, now: datetime) -> bool:
        """Activate or deactivate a user (deactivating revokes their refresh tokens)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                schema.users.update()
                .where(schema.users.c.id == user_id)
                .values(is_active=is_active)
            )
            if not is_active:
                t = schema.refresh_tokens.c
                await conn.execute(
                    schema.refresh_tokens.update()
                    .where(t.user_id == user_id, t.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
            return bool(result.rowcount)

    # -- refresh tokens ----------------------------------------------------------------------

    async def add_refresh_token(
        self, token_hash: str, user_id: str, *, now: datetime, expires_at: datetime
    ) -> str:
        """Store the first refresh token of a new family; returns the family id."""
        family_id = uuid.uuid4().hex
        async with self.engine.begin() as conn:
            await conn.execute(
                schema.refresh_tokens.insert().values(
                    token_hash=token_hash,
                    family_id=family_id,
                    user_id=user_id,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        return family_id

    async def rotate_refresh_token(
        self, old_hash: str, new_hash: str, *, now: datetime, expires_at: datetime
    ) -> Rotation:
        """Mark the presented token used and issue its successor in the same family.

        Presenting a token that was already used revokes its whole family: either the
        legitimate client or a thief holds a stale copy, and nobody can tell which.
        """
        t = schema.refresh_tokens.c
        async with self.engine.begin() as conn:
            # The conditional UPDATE is the compare-and-set: of two concurrent refreshes
            # with one token, exactly one wins and the other is treated as reuse.
            claimed = await conn.execute(
                schema.refresh_tokens.update()
                .where(
                    t.token_hash == old_hash,
                    t.used_at.is_(None),
                    t.revoked_at.is_(None),
                    t.expires_at > now,
                )
                .values(used_at=now)
            )
            row = (
                await conn.execute(
                    sa.select(t.family_id, t.user_id, t.used_at, t.revoked_at).where(
                        t.token_hash == old_hash
                    )
                )
            ).first()
            if row is None:
                return Rotation("unknown")
            user = await self._user_in(conn, row.user_id)
            if claimed.rowcount != 1:
                if row.revoked_at is not None:
                    return Rotation("revoked", row.family_id, user)
                if row.used_at is not None:
                    await self._revoke_family(conn, row.family_id, now)
                    return Rotation("reused", row.family_id, user)
                return Rotation("expired", row.family_id, user)
            if user is None or not user.is_active:
                await self._revoke_family(conn, row.family_id, now)
                return Rotation("inactive", row.family_id, user)
            await conn.execute(
                schema.refresh_tokens.insert().values(
                    token_hash=new_hash,
                    family_id=row.family_id,
                    user_id=row.user_id,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            return Rotation("rotated", row.family_id, user)

    async def revoke_refresh_family(
        self, token_hash: str, *, now: datetime
    ) -> tuple[str, User | None] | None:
        """Revoke the family of the given token; its family id and user, None if unknown."""
        t = schema.refresh_tokens.c
        family = sa.select(t.family_id).where(t.token_hash == token_hash).scalar_subquery()
        async with self.engine.begin() as conn:
            await conn.execute(
                schema.refresh_tokens.update()
                .where(t.family_id == family, t.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            row = (
                await conn.execute(
                    sa.select(t.family_id, t.user_id).where(t.token_hash == token_hash)
                )
            ).first()
            if row is None:
                return None
            return row.family_id, await self._user_in(conn, row.user_id)

    async def _revoke_family(self, conn: AsyncConnection, family_id: str, now: datetime) -> None:
        t = schema.refresh_tokens.c
        await conn.execute(
            schema.refresh_tokens.update()
            .where(t.family_id == family_id, t.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def _user_in(self, conn: AsyncConnection, user_id: str) -> User | None:
        rows = (await conn.execute(_USER_WITH_ROLES.where(schema.users.c.id == user_id))).all()
        return _user(rows[0], (r.role for r in rows)) if rows else None

    # -- API keys ----------------------------------------------------------------------------

    async def add_api_key(
        self,
        *,
        prefix: str,
        key_hash: str,
        user_id: str,
        name: str,
        scopes: Iterable[str],
        now: datetime,
        expires_at: datetime | None,
    ) -> ApiKey:
        """Store a new API key (its hash); IntegrityError if the prefix is taken."""
        key = ApiKey(
            uuid.uuid4().hex, prefix, name, user_id, frozenset(scopes), now, expires_at, None
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                schema.api_keys.insert().values(
                    id=key.id,
                    prefix=prefix,
                    key_hash=key_hash,
                    user_id=user_id,
                    name=name,
                    scopes=sorted(key.scopes),
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        return key

    async def find_api_key(self, prefix: str) -> KeyMatch | None:
        """The API key with this prefix and its user (one indexed query), if any."""
        k, u = schema.api_keys.c, schema.users.c
        query = (
            sa.select(
                schema.api_keys,
                u.username,
                u.is_active,
                u.created_at.label("user_created_at"),
                schema.user_roles.c.role,
            )
            .select_from(
                schema.api_keys.join(schema.users).outerjoin(
                    schema.user_roles, schema.user_roles.c.user_id == u.id
                )
            )
            .where(k.prefix == prefix)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return None
        first = rows[0]
        user = User(
            id=first._mapping[k.user_id],
            username=first.username,
            roles=frozenset(r.role for r in rows if r.role is not None),
            is_active=bool(first.is_active),
            created_at=_aware(first.user_created_at),
        )
        return KeyMatch(_api_key(first), first._mapping[k.key_hash], user)

    async def api_keys(self, user_id: str | None = None) -> list[ApiKey]:
        """API keys (of one user, or all), newest first."""
        k = schema.api_keys.c
        query = sa.select(schema.api_keys).order_by(k.created_at.desc(), k.id)
        if user_id is not None:
            query = query.where(k.user_id == user_id)
        async with self.engine.connect() as conn:
            return [_api_key(row) for row in (await conn.execute(query)).all()]

    async def revoke_api_key(
        self, key_id: str, *, now: datetime, owner: str | None = None
    ) -> ApiKey | None:
        """Revoke a key (only `owner`'s when given); the revoked key, None if not found."""
        k = schema.api_keys.c
        conditions: Sequence[Any] = [k.id == key_id] + ([k.user_id == owner] if owner else [])
        async with self.engine.begin() as conn:
            await conn.execute(
                schema.api_keys.update()
                .where(*conditions, k.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            row = (await conn.execute(sa.select(schema.api_keys).where(*conditions))).first()
            return None if row is None else _api_key(row)

"""UserStore: the users table, registration within the configured limit, email verification."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError

from nexus.plugins.database import Database

from .passwords import hash_password

_metadata = sa.MetaData()
#: The table as migrations/0001_create_users.py creates it.
users: Final = sa.Table(
    "user_manager_users",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(255)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("verified_at", sa.DateTime(timezone=True)),
    sa.Column("verification_hash", sa.String(64)),
    sa.Column("verification_expires_at", sa.DateTime(timezone=True)),
)


class RegistrationError(Exception):
    """A registration that cannot go ahead; `reason` names why for events and clients."""

    reason: str = "refused"


class UserLimitError(RegistrationError):
    """The application already has `limit` users."""

    reason = "max_users"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"The user limit of {limit} is reached.")


class EmailTakenError(RegistrationError):
    """Someone registered with this email address before."""

    reason = "email_taken"

    def __init__(self, email: str) -> None:
        self.email = email
        super().__init__(f"A user with email {email!r} is already registered.")


class VerificationError(Exception):
    """A verification token that is unknown, already used, or expired."""

    def __init__(self, reason: Literal["invalid", "expired"]) -> None:
        self.reason = reason
        super().__init__(
            "This verification link has expired."
            if reason == "expired"
            else "This verification link is not valid, or it was used already."
        )


@dataclass(frozen=True, slots=True)
class User:
    """A registered user, without secrets."""

    id: str
    email: str
    name: str
    created_at: dt.datetime
    verified_at: dt.datetime | None

    @property
    def is_verified(self) -> bool:
        """Whether the user confirmed their email address (or verification is off)."""
        return self.verified_at is not None


@dataclass(frozen=True, slots=True)
class Registration:
    """A new user and, when verification is on, the one token that verifies them."""

    user: User
    verification_token: str | None


class UserStore:
    """Reads and writes users in the application's database."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def register(
        self,
        *,
        email: str,
        name: str,
        password: str | None,
        max_users: int,
        verification_ttl: dt.timedelta | None,
    ) -> Registration:
        """Create a user; with `verification_ttl` the user starts unverified and gets a token.

        Raises UserLimitError when `max_users` exist already, EmailTakenError for a known email.
        """
        now = dt.datetime.now(dt.UTC)
        token = secrets.token_urlsafe(32) if verification_ttl is not None else None
        row: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "email": email,
            "name": name,
            "password_hash": None if password is None else await hash_password(password),
            "created_at": now,
            "verified_at": now if token is None else None,
            "verification_hash": None if token is None else _digest(token),
            "verification_expires_at": None,
        }
        if verification_ttl is not None:
            row["verification_expires_at"] = now + verification_ttl
        async with self._database.session() as session:
            if self._database.dialect == "postgresql":
                # Two registrations at once must not both pass the limit check. (SQLite
                # sessions begin IMMEDIATE, which already makes writers take turns.)
                await session.execute(
                    sa.text("LOCK TABLE user_manager_users IN SHARE ROW EXCLUSIVE MODE")
                )
            count = await session.scalar(sa.select(sa.func.count()).select_from(users))
            if (count or 0) >= max_users:
                raise UserLimitError(max_users)
            try:
                await session.execute(users.insert().values(row))
                await session.flush()
            except IntegrityError:
                raise EmailTakenError(email) from None
        return Registration(_user(row), token)

    async def get(self, user_id: str) -> User | None:
        """The user with this id, or None."""
        async with self._database.engine.connect() as conn:
            found = await conn.execute(sa.select(users).where(users.c.id == user_id))
            row = found.mappings().first()
        return None if row is None else _user(row)

    async def verify(self, token: str) -> User:
        """Mark the token's user verified; the token cannot be used again.

        Raises VerificationError when the token is unknown, used or expired.
        """
        digest = _digest(token)
        now = dt.datetime.now(dt.UTC)
        async with self._database.session() as session:
            found = await session.execute(
                sa.select(users).where(users.c.verification_hash == digest)
            )
            row = found.mappings().first()
            if row is None:
                raise VerificationError("invalid")
            expires_at = row["verification_expires_at"]
            if expires_at is not None and _utc(expires_at) <= now:
                raise VerificationError("expired")
            # Matching the hash again makes this the one request that consumes the token.
            updated = await session.execute(
                users.update()
                .where(users.c.id == row["id"], users.c.verification_hash == digest)
                .values(verified_at=now, verification_hash=None, verification_expires_at=None)
            )
            if cast(CursorResult[Any], updated).rowcount != 1:
                raise VerificationError("invalid")
        return _user({**row, "verified_at": now})


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything here is written in UTC.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _user(row: Any) -> User:
    verified_at = row["verified_at"]
    return User(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        created_at=_utc(row["created_at"]),
        verified_at=None if verified_at is None else _utc(verified_at),
    )

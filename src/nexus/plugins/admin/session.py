"""Dashboard sessions: an opaque cookie naming a server-side session, and the middleware reading it.

Why server-side sessions rather than auth's JWT in the cookie: signing out must end the session
at once (an access token stays valid until it expires, and auth keeps no deny-list of them),
an administrator whose role is taken away must lose the dashboard on their next request (a
token carries the roles it was issued with), and idle and absolute timeouts are enforced
here. The rows live in the database, so every instance and worker sees the same sessions and
they survive restarts; the cookie carries 256 random bits and the table only their SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Protocol

import sqlalchemy as sa

from nexus.http.types import ASGIApp, Message, Receive, Scope, Send
from nexus.kernel.correlation import actor

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from nexus.plugins.auth import Auth

logger = logging.getLogger("nexus.plugins.admin")

#: The session cookie, sent only to /admin: never ambient authority for other plugins' routes.
COOKIE: Final = "nexus_admin_session"
#: The sign-in form's double-submit CSRF cookie (there is no session to hold a token yet).
LOGIN_CSRF_COOKIE: Final = "nexus_admin_csrf"
COOKIE_PATH: Final = "/admin"
#: `scope["state"]` keys: the Session of the request, and why its cookie was not accepted.
SESSION_KEY: Final = "admin_session"
ERROR_KEY: Final = "admin_session_error"

#: How often at most a session's last use is written back.
_TOUCH_INTERVAL: Final = 60.0
_CACHE_SIZE: Final = 1000

_metadata = sa.MetaData()
#: The table as migrations/0001_create_admin_sessions.py creates it.
sessions_table: Final = sa.Table(
    "admin_sessions",
    _metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("username", sa.String(150), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("last_seen_at", sa.Float(), nullable=False),
    sa.Column("expires_at", sa.Float(), nullable=False),
    sa.Column("client_ip", sa.String(64)),
    sa.Column("user_agent", sa.String(256)),
)


class Caller(Protocol):
    """Who made a request: the auth plugin's Principal, or anything shaped like it."""

    @property
    def id(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def kind(self) -> str: ...
    def has(self, permission: str) -> bool: ...


def caller_of(scope: Scope) -> Caller | None:
    """The principal the authentication middleware found, if any.

    Checked by shape rather than class: reloading the auth plugin re-imports its Principal.
    """
    user = (scope.get("state") or {}).get("user")
    if (
        user is not None
        and callable(getattr(user, "has", None))
        and isinstance(getattr(user, "username", None), str)
    ):
        caller: Caller = user
        return caller
    return None


def digest(token: str) -> str:
    """The SHA-256 hex digest of a session token: the only form in which it is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in dashboard session (its secret is never kept, only its digest as `id`)."""

    id: str
    user_id: str
    username: str
    csrf_token: str
    created_at: float
    last_seen_at: float
    expires_at: float
    client_ip: str | None = None
    user_agent: str | None = None

    def ends_at(self, idle_timeout: float) -> float:
        """When the session ends unless it is used again before."""
        return min(self.expires_at, self.last_seen_at + idle_timeout)


class SessionStore:
    """The `admin_sessions` table: create, find (within idle and absolute timeouts), end."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        idle_timeout: float,
        lifetime: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self.idle_timeout, self.lifetime = idle_timeout, lifetime
        self._clock = clock

    async def create(
        self,
        user_id: str,
        username: str,
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[str, Session]:
        """Start a session; returns the cookie's secret token and the session."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(
            id=digest(token),
            user_id=user_id,
            username=username,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.lifetime,
            client_ip=client_ip[:64] if client_ip else None,
            user_agent=user_agent[:256] if user_agent else None,
        )
        async with self._engine.begin() as conn:
            await conn.execute(sessions_table.insert().values(**_row(session)))
        return token, session

    async def find(self, session_id: str) -> Session | None:
        """The live session with this id; an expired one is deleted and None returned."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(sessions_table).where(sessions_table.c.id == session_id)
                )
            ).first()
        if row is None:
            return None
        session = Session(**row._asdict())
        now = self._clock()
        if now >= session.ends_at(self.idle_timeout):
            await self.delete(session_id)
            return None
        if now - session.last_seen_at >= min(_TOUCH_INTERVAL, self.idle_timeout / 4):
            session = replace(session, last_seen_at=now)
            async with self._engine.begin() as conn:
                await conn.execute(
                    sessions_table.update()
                    .where(sessions_table.c.id == session_id)
                    .values(last_seen_at=now)
                )
        return session

    async def delete(self, session_id: str) -> bool:
        """End a session; returns whether it existed."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sessions_table.delete().where(sessions_table.c.id == session_id)
            )
        return bool(result.rowcount)

    async def prune(self) -> int:
        """Delete sessions past their absolute or idle timeout; returns how many."""
        now = self._clock()
        table = sessions_table
        async with self._engine.begin() as conn:
            result = await conn.execute(
                table.delete().where(
                    sa.or_(
                        table.c.expires_at <= now,
                        table.c.last_seen_at <= now - self.idle_timeout,
                    )
                )
            )
        return int(result.rowcount or 0)


def _row(session: Session) -> dict[str, Any]:
    return {column.name: getattr(session, column.name) for column in sessions_table.columns}


class Sessions:
    """Sign-in, sign-out, and the principal behind a session cookie.

    The principal is rebuilt from the auth service's current record of the user, so a user
    who was disabled or lost the admin role is refused on their next request. A checked
    session is remembered for `cache_ttl` seconds, which keeps the dashboard's polling off the
    database; ending a session here forgets it at once.
    """

    def __init__(self, store: SessionStore, auth: Auth, *, cache_ttl: float) -> None:
        self.store = store
        self._auth = auth
        self._cache_ttl = cache_ttl
        self._cache: dict[str, tuple[Session, Caller, float]] = {}

    async def start(
        self, caller: Caller, *, client_ip: str | None, user_agent: str | None
    ) -> tuple[str, Session]:
        """Create a session for a signed-in user; returns the cookie token and the session."""
        return await self.store.create(
            caller.id, caller.username, client_ip=client_ip, user_agent=user_agent
        )

    async def resolve(self, token: str) -> tuple[Session, Caller] | None:
        """The session and current principal of a cookie token; None if it is not valid."""
        if not token or len(token) > 128:
            return None
        session_id = digest(token)
        now = time.monotonic()
        cached = self._cache.get(session_id)
        if cached is not None and now < cached[2]:
            return cached[0], cached[1]
        session = await self.store.find(session_id)
        principal = None if session is None else await self._principal(session)
        if session is None or principal is None:
            self._cache.pop(session_id, None)
            return None
        if self._cache_ttl > 0:
            while len(self._cache) >= _CACHE_SIZE:
                del self._cache[next(iter(self._cache))]
            self._cache[session_id] = (session, principal, now + self._cache_ttl)
        return session, principal

    async def is_live(self, session: Session) -> bool:
        """Whether the session still exists (checked against the cache, then the database)."""
        cached = self._cache.get(session.id)
        if cached is not None and time.monotonic() < cached[2]:
            return True
        found = await self.store.find(session.id)
        return found is not None and await self._principal(found) is not None

    async def end(self, session_id: str) -> bool:
        """Sign a session out everywhere; returns whether it existed."""
        self._cache.pop(session_id, None)
        return await self.store.delete(session_id)

    async def _principal(self, session: Session) -> Caller | None:
        from nexus.plugins.auth import Principal

        user = await self._auth.user(session.user_id)
        if user is None or not user.is_active:
            return None
        return Principal(
            user.id,
            user.username,
            user.roles,
            self._auth.permissions_for(user.roles),
            None,
            "user",
            f"admin-session:{session.id[:12]}",
        )


def read_cookie(scope: Scope, name: str) -> str | None:
    """The value of cookie `name` in the request, if sent."""
    from starlette.requests import cookie_parser

    for header, value in scope["headers"]:
        if header == b"cookie":
            found = cookie_parser(value.decode("latin-1")).get(name)
            if found:
                return found
    return None


def cookie_header(
    name: str, value: str, *, max_age: int, secure: bool, http_only: bool = True
) -> str:
    """A Set-Cookie value for a cookie of the dashboard (Path=/admin, SameSite=Strict)."""
    parts = [f"{name}={value}", f"Path={COOKIE_PATH}", f"Max-Age={max_age}", "SameSite=Strict"]
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def is_admin_path(path: str) -> bool:
    """Whether `path` is the dashboard's (/admin or below)."""
    return path == COOKIE_PATH or path.startswith(COOKIE_PATH + "/")


_NO_STORE: Final = (b"cache-control", b"no-store")


class AdminSessionMiddleware:
    """Authentication-stage middleware: the session cookie's user becomes the request's caller.

    Only requests to /admin are looked at, so the cookie never authenticates another plugin's
    routes (which do not check CSRF tokens). A caller already identified by the auth plugin
    (a bearer token or API key) is kept. The `actor` context variable names the user, so the
    kernel's lifecycle events and the audit log say who acted. Responses under /admin are
    marked `Cache-Control: no-store`, except the static assets.
    """

    def __init__(self, app: ASGIApp, *, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_admin_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not scope["path"].startswith(f"{COOKIE_PATH}/static/"):
            send = _no_store(send)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        token = read_cookie(scope, COOKIE)
        if token is None or caller_of(scope) is not None:
            await self.app(scope, receive, send)
            return
        try:
            found = await self.sessions.resolve(token)
        except Exception:  # the database may be down: say so rather than fail the request
            logger.exception("Could not check an admin session")
            state[ERROR_KEY] = "Sessions cannot be checked right now; retry shortly."
            await self.app(scope, receive, send)
            return
        if found is None:
            state[ERROR_KEY] = "Your admin session has ended; sign in again."
            await self.app(scope, receive, send)
            return
        session, principal = found
        state["user"] = principal
        state[SESSION_KEY] = session
        reset = actor.set(principal.username)
        try:
            await self.app(scope, receive, send)
        finally:
            actor.reset(reset)


def _no_store(send: Send) -> Send:
    async def send_no_store(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or ())
            if not any(name == b"cache-control" for name, _ in headers):
                headers.append(_NO_STORE)
            message["headers"] = headers
        await send(message)

    return send_no_store

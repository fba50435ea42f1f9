"""Auth: the service other plugins get under AUTH; logins, tokens, users, roles and API keys."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, Protocol

from sqlalchemy.exc import IntegrityError

from nexus.errors import NexusError
from nexus.kernel.correlation import actor as current_actor
from nexus.kernel.services import ServiceKey
from nexus.plugins.auth.credentials import Credentials
from nexus.plugins.auth.errors import (
    InvalidCredentialsError,
    InvalidTokenError,
    LoginThrottledError,
    NotFoundError,
    ScopeError,
)
from nexus.plugins.auth.passwords import Passwords
from nexus.plugins.auth.principal import Principal
from nexus.plugins.auth.settings import AuthSettings
from nexus.plugins.auth.store import ApiKey, AuthStore, User
from nexus.plugins.auth.throttle import LoginThrottle
from nexus.plugins.auth.tokens import (
    AccessTokens,
    digest,
    new_api_key,
    new_refresh_token,
)

#: Usernames: letters, digits and `_ . @ + -` (so e-mail addresses work), at most 150.
_USERNAME: Final = re.compile(r"[A-Za-z0-9_.@+\-]{1,150}\Z")
_INCORRECT: Final = "Incorrect username or password."

#: The permission that lets a user manage other users' API keys.
MANAGE: Final = "auth:manage"


class Publisher(Protocol):
    """Where events go (the plugin's `ctx.events`)."""

    async def publish(self, topic: str, data: Any = None, *, priority: int = 0) -> object:
        """Publish one event."""
        ...


class TokenPair(NamedTuple):
    """What a login or refresh returns: OAuth2's token response."""

    access_token: str
    expires_in: int
    refresh_token: str

    def as_dict(self) -> dict[str, Any]:
        """The RFC 6749 token response body."""
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }


def _now() -> datetime:
    return datetime.now(UTC)


class Auth:
    """Authenticates requests and manages the accounts behind them.

    Access tokens are verified without touching the database; API keys cost one indexed
    query, then are trusted from memory for `api_key_cache_ttl`.
    """

    def __init__(
        self,
        settings: AuthSettings,
        *,
        key: bytes,
        store: AuthStore,
        events: Publisher,
        logger: logging.Logger | None = None,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.passwords = Passwords(
            settings.password_hashing,
            min_length=settings.password_min_length,
            max_length=settings.password_max_length,
        )
        self.tokens = AccessTokens(
            key,
            algorithm=settings.algorithm,
            issuer=settings.issuer,
            audience=settings.audience,
            ttl=settings.access_token_ttl,
            leeway=settings.clock_skew,
        )
        self.throttle = throttle or LoginThrottle(
            rate=settings.login_rate,
            burst=settings.login_burst,
            ip_rate=settings.login_ip_rate,
            ip_burst=settings.login_ip_burst,
        )
        self.credentials = Credentials(
            self.tokens,
            store,
            leeway=settings.clock_skew,
            key_ttl=settings.api_key_cache_ttl,
            token_cache_size=settings.verified_token_cache_size,
        )
        self._events = events
        self._logger = logger or logging.getLogger("nexus.plugins.auth")
        self._role_error: str | None = None

    # -- roles and permissions ---------------------------------------------------------------

    async def load_roles(self) -> None:
        """Read the role table; cached principals are dropped if a role changed."""
        self.credentials.set_roles(await self.store.roles())

    async def watch_roles(self) -> None:
        """Re-read roles every `role_refresh_interval` (other instances may change them)."""
        interval = self.settings.role_refresh_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.load_roles()
            except Exception as exc:  # any failure: keep the last good roles and report it
                self._role_error = f"{type(exc).__name__}: {exc}"
                self._logger.warning(
                    "Could not re-read roles; keeping the last ones", exc_info=True
                )
            else:
                self._role_error = None

    @property
    def health_problem(self) -> str | None:
        """Why roles could not be refreshed lately, if they could not."""
        return self._role_error

    def roles(self) -> dict[str, frozenset[str]]:
        """Every role and its permissions (as last read)."""
        return self.credentials.roles

    def permissions_for(self, roles: Iterable[str]) -> frozenset[str]:
        """The union of the permissions of `roles` (unknown roles grant nothing)."""
        return self.credentials.permissions_for(roles)

    async def set_role(self, name: str, permissions: Iterable[str], description: str = "") -> None:
        """Create a role or replace its permissions (takes effect at once on this instance)."""
        permissions = sorted(set(permissions))
        await self.store.put_role(name, permissions, description)
        await self.load_roles()
        await self._publish(
            "auth.role.updated",
            resource=f"role:{name}",
            outcome="success",
            role=name,
            permissions=permissions,
        )

    # -- authenticating requests ---------------------------------------------------------

    def authenticate_token(self, token: str) -> Principal:
        """The principal of a valid access token; InvalidTokenError says what is wrong."""
        return self.credentials.authenticate_token(token)

    async def authenticate_api_key(self, key: str) -> Principal:
        """The principal of a valid API key; InvalidTokenError says what is wrong."""
        return await self.credentials.authenticate_api_key(key)

    async def deny(self, principal: Principal, resource: str, missing: list[str]) -> None:
        """Publish `security.denied`: `principal` lacked `missing` for `resource`."""
        await self._publish(
            "security.denied",
            actor=principal.username,
            resource=resource,
            outcome="denied",
            permission=missing[0],
            missing=missing,
            user_id=principal.id,
            principal_kind=principal.kind,
            credential_id=principal.credential_id,
        )

    # -- logins and tokens -------------------------------------------------------------------

    async def login(self, username: str, password: str, *, client_ip: str | None) -> TokenPair:
        """Check a username and password and issue tokens.

        Raises LoginThrottledError after too many attempts, InvalidCredentialsError otherwise.
        """
        retry_after = await self.throttle.hit(username, client_ip)
        if retry_after is not None:
            await self._publish(
                "auth.login.throttled",
                actor=username,
                resource=f"user:{username}",
                outcome="throttled",
                client_ip=client_ip,
                retry_after=retry_after,
            )
            raise LoginThrottledError(retry_after)
        account = None
        if len(password) <= self.passwords.max_length:
            account = await self.store.account(username)
        if account is None:
            await self.passwords.verify_decoy(password[: self.passwords.max_length])
            reason = "unknown user"
        elif not await self.passwords.verify(account.password_hash, password):
            reason = "wrong password"
        elif not account.user.is_active:
            reason = "user disabled"
        else:
            user = account.user
            if self.passwords.needs_rehash(account.password_hash):
                await self.store.set_password_hash(user.id, await self.passwords.hash(password))
            pair = await self._issue(user)
            await self._publish(
                "auth.login.succeeded",
                actor=user.username,
                resource=f"user:{user.username}",
                outcome="success",
                user_id=user.id,
                client_ip=client_ip,
            )
            return pair
        await self._publish(
            "auth.login.failed",
            actor=username,
            resource=f"user:{username}",
            outcome="failure",
            reason=reason,
            user_id=account.user.id if account is not None else None,
            client_ip=client_ip,
        )
        raise InvalidCredentialsError(_INCORRECT)

    async def _issue(self, user: User) -> TokenPair:
        access, expires_in = self.tokens.issue(user.id, user.username, user.roles)
        refresh = new_refresh_token()
        now = _now()
        await self.store.add_refresh_token(
            digest(refresh), user.id, now=now, expires_at=now + self.settings.refresh_token_ttl
        )
        return TokenPair(access, expires_in, refresh)

    async def refresh(self, refresh_token: str, *, client_ip: str | None = None) -> TokenPair:
        """Exchange a refresh token for new tokens; the old one can never be used again.

        Presenting an already used refresh token revokes its whole family (every token issued
        since that login) and raises InvalidTokenError.
        """
        successor = new_refresh_token()
        now = _now()
        rotation = await self.store.rotate_refresh_token(
            digest(refresh_token),
            digest(successor),
            now=now,
            expires_at=now + self.settings.refresh_token_ttl,
        )
        user, family = rotation.user, rotation.family_id
        who = user.username if user is not None else None
        if rotation.outcome == "rotated" and user is not None:
            access, expires_in = self.tokens.issue(user.id, user.username, user.roles)
            await self._publish(
                "auth.token.refreshed",
                actor=who,
                resource=f"user:{who}",
                outcome="success",
                user_id=user.id,
                family_id=family,
                client_ip=client_ip,
            )
            return TokenPair(access, expires_in, successor)
        if rotation.outcome == "reused":
            details = {"user_id": user.id if user else None, "family_id": family}
            await self._publish(
                "auth.token.reuse_detected",
                actor=who,
                resource=f"user:{who}",
                outcome="denied",
                client_ip=client_ip,
                **details,
            )
            await self._publish(
                "auth.token.revoked",
                actor=who,
                resource=f"user:{who}",
                outcome="success",
                reason="reuse detected",
                **details,
            )
            raise InvalidTokenError(
                "The refresh token was already used, so every token of this session has been "
                "revoked. Sign in again."
            )
        raise InvalidTokenError(
            {
                "revoked": "The refresh token has been revoked. Sign in again.",
                "expired": "The refresh token has expired. Sign in again.",
                "inactive": "The user is disabled.",
            }.get(rotation.outcome, "The refresh token is not valid.")
        )

    async def revoke(self, refresh_token: str) -> bool:
        """Revoke the session (refresh token family) of `refresh_token`; False if unknown."""
        found = await self.store.revoke_refresh_family(digest(refresh_token), now=_now())
        if found is None:
            return False
        family, user = found
        who = user.username if user is not None else None
        await self._publish(
            "auth.token.revoked",
            actor=current_actor.get() or who,
            resource=f"user:{who}",
            outcome="success",
            reason="logout",
            user_id=user.id if user else None,
            family_id=family,
        )
        return True

    # -- users -------------------------------------------------------------------------------

    async def create_user(self, username: str, password: str, *, roles: Iterable[str] = ()) -> User:
        """Create a user (UserExistsError, UnknownRoleError, PasswordPolicyError, ValueError)."""
        if not _USERNAME.match(username):
            raise ValueError(
                f"Username {username!r} is not allowed: use 1 to 150 letters, digits or "
                f"_ . @ + - characters."
            )
        self.passwords.check_policy(password)
        hashed = await self.passwords.hash(password)
        user = await self.store.create_user(username, hashed, roles, now=_now())
        await self._publish(
            "auth.user.created",
            resource=f"user:{user.username}",
            outcome="success",
            user_id=user.id,
            username=user.username,
            roles=sorted(user.roles),
        )
        return user

    async def set_password(self, user_id: str, password: str) -> None:
        """Replace a user's password (policy-checked)."""
        self.passwords.check_policy(password)
        user = await self._user(user_id)
        await self.store.set_password_hash(user.id, await self.passwords.hash(password))
        await self._publish(
            "auth.user.updated",
            resource=f"user:{user.username}",
            outcome="success",
            user_id=user.id,
            change="password",
        )

    async def set_user_roles(self, user_id: str, roles: Iterable[str]) -> User:
        """Replace a user's roles (effective with their next access token)."""
        wanted = sorted(set(roles))
        user = await self._user(user_id)
        await self.store.set_roles(user.id, wanted)
        await self._publish(
            "auth.user.updated",
            resource=f"user:{user.username}",
            outcome="success",
            user_id=user.id,
            change="roles",
            roles=wanted,
        )
        return await self._user(user_id)

    async def set_user_active(self, user_id: str, is_active: bool) -> User:
        """Enable or disable a user; disabling also revokes their sessions."""
        user = await self._user(user_id)
        await self.store.set_active(user.id, is_active, now=_now())
        self.credentials.forget()
        await self._publish(
            "auth.user.updated",
            resource=f"user:{user.username}",
            outcome="success",
            user_id=user.id,
            change="enabled" if is_active else "disabled",
        )
        return await self._user(user_id)

    async def users(self) -> list[User]:
        """Every user, by username."""
        return await self.store.users()

    async def user(self, user_id: str) -> User | None:
        """The user with this id, if any."""
        return await self.store.user(user_id)

    async def _user(self, user_id: str) -> User:
        user = await self.store.user(user_id)
        if user is None:
            raise NotFoundError(f"No user with id {user_id!r}.")
        return user

    # -- API keys ----------------------------------------------------------------------------

    async def create_api_key(
        self,
        principal: Principal,
        name: str,
        scopes: Iterable[str],
        *,
        expires_at: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """Create an API key for `principal`'s user; returns it and the secret (shown once).

        The scopes must be permissions the creator holds (ScopeError otherwise), and only a
        user signed in with a password may create keys.
        """
        if principal.kind != "user":
            raise ScopeError("An API key cannot create API keys; sign in with a password.")
        wanted = sorted(set(scopes))
        if not wanted:
            raise ValueError("An API key needs at least one scope (a permission it may use).")
        if missing := principal.missing(wanted):
            raise ScopeError(
                f"You cannot give an API key scopes you do not hold: {', '.join(missing)}."
            )
        now = _now()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
            if expires_at <= now:
                raise ValueError("expires_at must be in the future.")
        for _ in range(3):
            secret, prefix = new_api_key()
            try:
                record = await self.store.add_api_key(
                    prefix=prefix,
                    key_hash=digest(secret),
                    user_id=principal.id,
                    name=name,
                    scopes=wanted,
                    now=now,
                    expires_at=expires_at,
                )
            except IntegrityError:  # a prefix collision (48 random bits): draw again
                continue
            break
        else:  # pragma: no cover - three 48-bit collisions in a row
            raise NexusError("Could not find a free API key prefix; try again.")
        await self._publish(
            "auth.apikey.created",
            actor=principal.username,
            resource=f"api_key:{record.id}",
            outcome="success",
            key_id=record.id,
            prefix=record.prefix,
            name=name,
            owner=principal.username,
            scopes=wanted,
            expires_at=None if expires_at is None else expires_at.isoformat(),
        )
        return record, secret

    async def api_keys(self, principal: Principal) -> list[ApiKey]:
        """The API keys of `principal`'s user, newest first."""
        return await self.store.api_keys(principal.id)

    async def revoke_api_key(self, principal: Principal, key_id: str) -> ApiKey:
        """Revoke one of the user's keys (any user's with `auth:manage`); NotFoundError if none."""
        owner = None if principal.has(MANAGE) else principal.id
        record = await self.store.revoke_api_key(key_id, now=_now(), owner=owner)
        if record is None:
            raise NotFoundError(f"No API key {key_id!r} of yours exists.")
        self.credentials.forget_key(key_id)
        await self._publish(
            "auth.apikey.revoked",
            actor=principal.username,
            resource=f"api_key:{record.id}",
            outcome="success",
            key_id=record.id,
            prefix=record.prefix,
            owner_id=record.user_id,
        )
        return record

    # -- events ------------------------------------------------------------------------------

    async def _publish(self, topic: str, **data: Any) -> None:
        data.setdefault("actor", current_actor.get() or "system")
        try:
            await self._events.publish(topic, data)
        except NexusError:
            # An overloaded bus must not turn logins into errors; the log keeps the record.
            self._logger.exception("Could not publish %s: %s", topic, data)


AUTH: Final = ServiceKey[Auth]("auth", Auth)

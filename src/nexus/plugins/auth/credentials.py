"""Credentials: access tokens and API keys turned into Principals, with what roles grant."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Final

from nexus.plugins.auth.errors import InvalidTokenError
from nexus.plugins.auth.principal import ADMIN_ROLE, Principal, grants
from nexus.plugins.auth.store import AuthStore
from nexus.plugins.auth.tokens import AccessTokens, api_key_prefix, digest

#: Verified credentials kept in memory; the oldest is dropped past this many.
CACHE_SIZE: Final = 10_000


def _make_room(cache: dict[str, Any], size: int = CACHE_SIZE) -> None:
    while len(cache) >= size:
        del cache[next(iter(cache))]


class Credentials:
    """Verify credentials on the request path, as cheaply as possible.

    A verified access token is remembered until it expires, so a client that sends the same
    token again costs one dict lookup rather than a signature check (at most
    `token_cache_size` tokens are remembered; 0 checks the signature every time). An API key
    costs one indexed query, then is trusted for `key_ttl` (a revocation elsewhere takes that
    long to be seen; here it is immediate).
    """

    def __init__(
        self,
        tokens: AccessTokens,
        store: AuthStore,
        *,
        leeway: timedelta,
        key_ttl: timedelta,
        token_cache_size: int = CACHE_SIZE,
    ) -> None:
        self.tokens, self.store = tokens, store
        self._token_cache_size = token_cache_size
        self._leeway = leeway.total_seconds()
        self._key_ttl = key_ttl.total_seconds()
        self._roles: dict[str, frozenset[str]] = {}
        self._grants: dict[frozenset[str], frozenset[str]] = {}
        self._verified_tokens: dict[str, tuple[Principal, float]] = {}
        self._verified_keys: dict[str, tuple[Principal, float]] = {}

    @property
    def roles(self) -> dict[str, frozenset[str]]:
        """Every role and the permissions it grants."""
        return dict(self._roles)

    def set_roles(self, roles: dict[str, frozenset[str]]) -> None:
        """Use these role definitions; remembered principals are dropped if any changed."""
        if roles != self._roles:
            self._roles = roles
            self._grants.clear()
            self.forget()

    def forget(self) -> None:
        """Drop every remembered principal (permissions or users changed)."""
        self._verified_tokens.clear()
        self._verified_keys.clear()

    def forget_key(self, key_id: str) -> None:
        """Stop trusting the remembered API key with this id (it was revoked)."""
        cache = self._verified_keys
        for hashed in [h for h, (p, _) in cache.items() if p.credential_id == key_id]:
            del cache[hashed]

    def permissions_for(self, roles: Iterable[str]) -> frozenset[str]:
        """The union of the permissions of `roles` (unknown roles grant nothing)."""
        key = roles if isinstance(roles, frozenset) else frozenset(roles)
        found = self._grants.get(key)
        if found is None:
            found = frozenset().union(*(self._roles.get(role, frozenset()) for role in key))
            self._grants[key] = found
        return found

    def authenticate_token(self, token: str) -> Principal:
        """The principal of a valid access token; InvalidTokenError says what is wrong."""
        cached = self._verified_tokens.get(token)
        if cached is not None:
            if time.time() <= cached[1] + self._leeway:
                return cached[0]
            del self._verified_tokens[token]
        claims = self.tokens.verify(token)
        principal = Principal(
            claims.user_id,
            claims.username,
            claims.roles,
            self.permissions_for(claims.roles),
            None,
            "user",
            claims.token_id,
        )
        if self._token_cache_size > 0:
            _make_room(self._verified_tokens, self._token_cache_size)
            self._verified_tokens[token] = (principal, claims.expires_at)
        return principal

    async def authenticate_api_key(self, key: str) -> Principal:
        """The principal of a valid API key; InvalidTokenError says what is wrong."""
        hashed = digest(key)
        cached = self._verified_keys.get(hashed)
        now = time.time()
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._verified_keys[hashed]
        prefix = api_key_prefix(key)
        if prefix is None:
            raise InvalidTokenError("The API key is malformed.")
        match = await self.store.find_api_key(prefix)
        if match is None or not hmac.compare_digest(match.key_hash, hashed):
            raise InvalidTokenError("The API key is not valid.")
        record, user = match.key, match.user
        if record.revoked_at is not None:
            raise InvalidTokenError("The API key has been revoked.")
        if record.expires_at is not None and record.expires_at.timestamp() <= now:
            raise InvalidTokenError("The API key has expired.")
        if not user.is_active:
            raise InvalidTokenError("The API key's user is disabled.")
        held = self.permissions_for(user.roles)
        # A key never exceeds its user: a scope counts only while the user holds it.
        effective = frozenset(
            scope for scope in record.scopes if ADMIN_ROLE in user.roles or grants(held, scope)
        )
        principal = Principal(
            user.id, user.username, user.roles, effective, record.scopes, "api_key", record.id
        )
        until = now + self._key_ttl
        if record.expires_at is not None:
            until = min(until, record.expires_at.timestamp())
        _make_room(self._verified_keys)
        self._verified_keys[hashed] = (principal, until)
        return principal

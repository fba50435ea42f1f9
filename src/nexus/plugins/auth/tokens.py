"""Credentials: signed JWT access tokens, opaque refresh tokens and API keys.

Refresh tokens and API keys are random strings that are stored only as their SHA-256: they
carry 256 bits of entropy, so a fast hash is enough (no dictionary can reach them).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Final, NamedTuple

from nexus.plugins.auth.errors import InvalidTokenError

try:
    import jwt
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "The auth plugin signs tokens with PyJWT, which is not installed. "
        "Install it with: pip install 'nexus-platform[auth]'"
    ) from exc

#: API keys look like `nxk_<12 hex prefix>_<secret>`; the prefix finds the key's row.
API_KEY_MARK: Final = "nxk_"
_PREFIX_LEN: Final = 12
_REQUIRED_CLAIMS: Final = ["exp", "iat", "nbf", "sub", "jti", "iss", "aud"]


class AccessClaims(NamedTuple):
    """What a verified access token says."""

    user_id: str
    username: str
    roles: frozenset[str]
    token_id: str
    expires_at: float


class AccessTokens:
    """Issue and verify JWT access tokens with one key and one pinned algorithm."""

    def __init__(
        self,
        key: bytes,
        *,
        algorithm: str,
        issuer: str,
        audience: str,
        ttl: timedelta,
        leeway: timedelta,
    ) -> None:
        self._key, self.algorithm = key, algorithm
        self.issuer, self.audience = issuer, audience
        self.ttl_seconds = int(ttl.total_seconds())
        self._leeway = leeway.total_seconds()
        # Pinning the list is what stops `alg: none` and RS256/HS256 confusion.
        self._algorithms = [algorithm]
        # The required claims are this decoder's defaults, not options merged on every call.
        self._decoder = jwt.PyJWT(options={"require": _REQUIRED_CLAIMS})

    def issue(self, user_id: str, username: str, roles: Iterable[str]) -> tuple[str, int]:
        """A signed access token for the user, and its lifetime in seconds."""
        now = int(time.time())
        claims = {
            "sub": user_id,
            "username": username,
            "roles": sorted(roles),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
            "iss": self.issuer,
            "aud": self.audience,
        }
        return jwt.encode(claims, self._key, algorithm=self.algorithm), self.ttl_seconds

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; InvalidTokenError says why a token is not."""
        try:
            claims = self._decoder.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("The access token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise InvalidTokenError("The access token is not valid yet.") from None
        except jwt.InvalidAudienceError:
            raise InvalidTokenError("The access token is for another audience.") from None
        except jwt.InvalidIssuerError:
            raise InvalidTokenError("The access token is from another issuer.") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidTokenError(
                f"The access token is not signed with {self.algorithm}."
            ) from None
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("The access token's signature does not verify.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidTokenError(f"The access token lacks the {exc.claim!r} claim.") from None
        except jwt.InvalidTokenError:
            raise InvalidTokenError("The access token is malformed.") from None
        subject, username, roles = claims["sub"], claims.get("username"), claims.get("roles")
        if not isinstance(subject, str) or not isinstance(username, str) or type(roles) is not list:
            raise InvalidTokenError("The access token's claims are malformed.")
        try:
            held = frozenset(roles)
        except TypeError:  # unhashable entries, e.g. objects
            raise InvalidTokenError("The access token's claims are malformed.") from None
        if held and set(map(type, held)) != {str}:
            raise InvalidTokenError("The access token's claims are malformed.")
        return AccessClaims(subject, username, held, str(claims["jti"]), float(claims["exp"]))


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which a refresh token or API key is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token() -> str:
    """A fresh opaque refresh token (256 random bits)."""
    return secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """A fresh API key and its lookup prefix."""
    prefix = secrets.token_hex(_PREFIX_LEN // 2)
    return f"{API_KEY_MARK}{prefix}_{secrets.token_urlsafe(32)}", prefix


def api_key_prefix(key: str) -> str | None:
    """The lookup prefix of a well-formed API key, else None."""
    start = len(API_KEY_MARK)
    prefix = key[start : start + _PREFIX_LEN]
    if len(key) < start + _PREFIX_LEN + 2 or key[start + _PREFIX_LEN] != "_":
        return None
    if any(c not in "0123456789abcdef" for c in prefix):
        return None
    return prefix

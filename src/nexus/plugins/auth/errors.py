"""Errors of the auth plugin; routes turn them into 400, 401, 403, 404, 409 and 429 problems."""

from __future__ import annotations

from nexus.errors import NexusError


class AuthError(NexusError):
    """Base class of the auth plugin's errors."""


class InvalidCredentialsError(AuthError, PermissionError):
    """A username and password (or refresh token, or API key) were not accepted."""


class InvalidTokenError(AuthError, PermissionError):
    """A credential is malformed, expired, revoked or signed with another key; says which."""


class LoginThrottledError(AuthError, PermissionError):
    """Too many login attempts; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"Too many login attempts. Retry in {retry_after} s.")


class PasswordPolicyError(AuthError, ValueError):
    """A new password does not meet the policy (length)."""


class UserExistsError(AuthError, ValueError):
    """A user with this username (compared case-insensitively) already exists."""

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"A user named {username!r} already exists (usernames ignore case).")


class UnknownRoleError(AuthError, ValueError):
    """A role that is not defined was assigned."""

    def __init__(self, roles: list[str], known: list[str]) -> None:
        self.roles = roles
        super().__init__(
            f"Unknown role(s): {', '.join(roles)}. Defined roles: {', '.join(known) or 'none'}."
        )


class ScopeError(AuthError, PermissionError):
    """An API key was asked for scopes its creator does not hold."""


class NotFoundError(AuthError, LookupError):
    """A user or API key does not exist (or is not the caller's)."""

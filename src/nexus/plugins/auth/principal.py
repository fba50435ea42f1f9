"""Principal: who made a request, and what they may do."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

#: The role that holds every permission.
ADMIN_ROLE = "admin"
#: The permission that covers every other one.
ALL = "*"


def grants(held: frozenset[str], permission: str) -> bool:
    """Whether the permissions `held` cover `permission` ("*" all, "notes:*" every notes:...)."""
    if permission in held or ALL in held:
        return True
    return any(grant.endswith(":*") and permission.startswith(grant[:-1]) for grant in held)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user, or an API key acting for one (then limited to its `scopes`)."""

    id: str
    """The user's id (for an API key too: the user it acts for)."""
    username: str
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    """Effective permissions: for an API key, its scopes that its user also holds."""
    scopes: frozenset[str] | None = None
    """An API key's scopes; None for a user signed in with a password."""
    kind: Literal["user", "api_key"] = "user"
    credential_id: str | None = None
    """The API key's id, or the access token's `jti`."""

    @property
    def is_admin(self) -> bool:
        """Whether this is a user with the admin role (an API key never is)."""
        return self.scopes is None and ADMIN_ROLE in self.roles

    def has(self, permission: str) -> bool:
        """Whether the principal holds `permission` (the admin role holds every one)."""
        if self.scopes is None and ADMIN_ROLE in self.roles:
            return True
        return grants(self.permissions, permission)

    def missing(self, permissions: Iterable[str]) -> list[str]:
        """The permissions among `permissions` that the principal lacks, in order."""
        if self.scopes is None and ADMIN_ROLE in self.roles:
            return []
        held = self.permissions
        return [p for p in permissions if not grants(held, p)]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (sorted lists), as `GET /api/auth/me` shows it."""
        return {
            "id": self.id,
            "username": self.username,
            "kind": self.kind,
            "roles": sorted(self.roles),
            "permissions": sorted(self.permissions),
            "scopes": None if self.scopes is None else sorted(self.scopes),
        }

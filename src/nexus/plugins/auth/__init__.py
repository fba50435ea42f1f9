"""Authentication and authorisation: users, roles, JWT access tokens, refresh tokens, API keys.

Other plugins protect their routes with the dependencies:

    from nexus.plugins.auth import CurrentPrincipal, Principal, require

    @router.get("/notes", dependencies=[Depends(require("notes:read"))])
    async def list_notes(): ...

    @router.post("/notes")
    async def add(principal: Annotated[Principal, Depends(require("notes:write"))]): ...

and reach the service with `ctx.services.get(AUTH)` (manifest: `services:use:auth`).
"""

from __future__ import annotations

from nexus.plugins.auth.dependencies import CurrentPrincipal, current_principal, require
from nexus.plugins.auth.errors import (
    AuthError,
    InvalidCredentialsError,
    InvalidTokenError,
    LoginThrottledError,
    NotFoundError,
    PasswordPolicyError,
    ScopeError,
    UnknownRoleError,
    UserExistsError,
)
from nexus.plugins.auth.plugin import AuthPlugin
from nexus.plugins.auth.principal import ADMIN_ROLE, Principal
from nexus.plugins.auth.service import AUTH, MANAGE, Auth, TokenPair
from nexus.plugins.auth.settings import AuthSettings, PasswordHashing
from nexus.plugins.auth.store import ApiKey, User
from nexus.plugins.auth.throttle import LoginThrottle

__all__ = [
    "ADMIN_ROLE",
    "AUTH",
    "MANAGE",
    "ApiKey",
    "Auth",
    "AuthError",
    "AuthPlugin",
    "AuthSettings",
    "CurrentPrincipal",
    "InvalidCredentialsError",
    "InvalidTokenError",
    "LoginThrottle",
    "LoginThrottledError",
    "NotFoundError",
    "PasswordHashing",
    "PasswordPolicyError",
    "Principal",
    "ScopeError",
    "TokenPair",
    "UnknownRoleError",
    "User",
    "UserExistsError",
    "current_principal",
    "require",
]

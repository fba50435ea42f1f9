"""FastAPI dependencies for any plugin's routes: `current_principal` and `require(...)`.

They read what the auth plugin's middleware found, so they work in every plugin's routes
without a service lookup; when the auth plugin is not running they answer 503.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

from fastapi import Depends, Request

from nexus.http.problems import ProblemError, ServiceUnavailableError
from nexus.http.types import Scope
from nexus.plugins.auth.middleware import ERROR_KEY, SERVICE_KEY, UNAVAILABLE_KEY
from nexus.plugins.auth.principal import Principal

_UNAVAILABLE: Final = (
    "Authentication is unavailable: the auth plugin is not running. Enable it, or retry "
    "shortly if it is being restarted."
)


def unauthorized(token_error: str | None, detail: str | None = None) -> ProblemError:
    """A 401 problem with the RFC 6750 challenge; `token_error` says why a token was refused."""
    challenge = 'Bearer realm="nexus"'
    if token_error is not None:
        reason = token_error.replace('"', "'")
        challenge += f', error="invalid_token", error_description="{reason}"'
    return ProblemError(
        401,
        detail or token_error or "Sign in: send `Authorization: Bearer <token>` or `X-API-Key`.",
        headers={"WWW-Authenticate": challenge},
    )


def principal_of(scope: Scope) -> Principal:
    """The request's principal; raises the 401 or 503 problem when there is none."""
    state: dict[str, Any] = scope.get("state") or {}
    user = state.get("user")
    if isinstance(user, Principal):
        return user
    if SERVICE_KEY not in state:
        raise ServiceUnavailableError(_UNAVAILABLE, retry_after=5)
    error: str | None = state.get(ERROR_KEY)
    if state.get(UNAVAILABLE_KEY):
        raise ServiceUnavailableError(error, retry_after=5)
    raise unauthorized(error)


def route_path(request: Request) -> str:
    """The path template of the matched route (`/api/notes/notes/{id}`), else the URL path.

    Routes of included routers may know only their own part of the path (`/notes/{id}`), so
    the part before it is taken from the URL.
    """
    path: str = request.scope.get("path", "")
    route = request.scope.get("route")
    template, regex = getattr(route, "path", None), getattr(route, "path_regex", None)
    if not isinstance(template, str) or regex is None:
        return path
    start = 0
    while start >= 0:
        if regex.match(path[start:]):
            return path[:start] + template
        start = path.find("/", start + 1)
    return path


async def current_principal(request: Request) -> Principal:
    """The signed-in user or API key; 401 problem when anonymous or the credential is bad."""
    return principal_of(request.scope)


def require(*permissions: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that lets through only principals holding every one of `permissions`.

    `Depends(require("notes:write"))` answers 401 without a valid credential and 403 (naming
    the missing permission, and publishing `security.denied`) without the permissions. It
    returns the Principal, so it can also be a parameter:
    `principal: Annotated[Principal, Depends(require("notes:write"))]`.
    """
    if not permissions or not all(isinstance(p, str) and p for p in permissions):
        raise ValueError(f"require() needs one or more permission names, got {permissions!r}.")
    needed = tuple(dict.fromkeys(permissions))

    async def check_permissions(request: Request) -> Principal:
        principal = principal_of(request.scope)
        missing = principal.missing(needed)
        if not missing:
            return principal
        state = request.scope["state"]
        await state[SERVICE_KEY].deny(principal, f"{request.method} {route_path(request)}", missing)
        raise ProblemError(
            403,
            f"This needs permission {missing[0]!r}, which {principal.username!r} "
            f"{'(API key) ' if principal.kind == 'api_key' else ''}does not have.",
            missing_permissions=missing,
        )

    check_permissions.__qualname__ = f"require({', '.join(map(repr, needed))})"
    return check_permissions


#: A route parameter holding the signed-in principal: `def me(principal: CurrentPrincipal)`.
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]

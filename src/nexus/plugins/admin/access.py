"""Who may use the dashboard, and the CSRF defences of its state-changing requests.

Callers are admins: the admin role, or any principal holding `admin:access`. They come with
the session cookie (browsers) or with a bearer token or API key (scripts). Cookie-borne
requests that change state must carry the session's synchronizer token in `X-CSRF-Token`
(forms may send it as the `csrf_token` field) and, when the browser says where it comes from,
an `Origin` of the dashboard itself. Bearer and API-key requests need neither: browsers never
attach those on their own, so a forged cross-site request cannot carry them.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final
from urllib.parse import urlsplit

from fastapi import Request

from nexus.http.problems import ProblemError
from nexus.http.types import Scope
from nexus.plugins.admin.session import ERROR_KEY, SESSION_KEY, Caller, Session, caller_of

#: The permission that opens the dashboard (the admin role holds every permission).
ACCESS_PERMISSION: Final = "admin:access"
CSRF_HEADER: Final = "x-csrf-token"
CSRF_FIELD: Final = "csrf_token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

_SIGN_IN: Final = "Sign in at /admin/login, or send `Authorization: Bearer <token>`."
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="nexus"'}

Deny = Callable[[Caller, str], Awaitable[None]]


def session_of(scope: Scope) -> Session | None:
    """The dashboard session the request's caller came from, if it came from one."""
    state = scope.get("state") or {}
    session = state.get(SESSION_KEY)
    return session if isinstance(session, Session) else None


def unauthorized(scope: Scope) -> ProblemError:
    """The 401 problem for a request without a usable credential."""
    state = scope.get("state") or {}
    reason = state.get(ERROR_KEY) or state.get("auth_error")
    detail = f"{reason} {_SIGN_IN}" if reason else f"You are not signed in. {_SIGN_IN}"
    return ProblemError(401, detail, headers=_CHALLENGE)


def own_origin(scope: Scope) -> str:
    """scheme://host[:port] of the dashboard as this request reached it (after proxy headers)."""
    host = ""
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
            break
    scheme = scope.get("scheme", "http")
    default_port = {"http": ":80", "https": ":443"}.get(scheme, "")
    if default_port and host.endswith(default_port):
        host = host[: -len(default_port)]
    return f"{scheme}://{host}".lower()


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    default_port = {"http": ":80", "https": ":443"}.get(parts.scheme, "")
    if default_port and netloc.endswith(default_port):
        netloc = netloc[: -len(default_port)]
    return f"{parts.scheme}://{netloc}".lower()


def check_origin(scope: Scope, allowed: Iterable[str]) -> None:
    """Refuse (403) a request whose Origin, else Referer, is not the dashboard's own origin.

    A request with neither is let through: browsers send Origin on every cross-site POST, so
    its absence means a non-browser client, which the CSRF token still has to satisfy.
    """
    origin = referer = None
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = value.decode("latin-1").strip()
        elif name == b"referer":
            referer = value.decode("latin-1").strip()
    claimed = origin if origin is not None else referer
    if claimed is None:
        return
    found = _origin_of(claimed)
    expected = {own_origin(scope), *allowed}
    if found is None or found not in expected:
        shown = "Origin" if origin is not None else "Referer"
        raise ProblemError(
            403,
            f"Cross-site request refused: its {shown} {claimed!r} is not this dashboard's "
            f"origin. Add it to plugins.admin.allowed_origins if it should be allowed.",
        )


async def sent_csrf_token(request: Request) -> str | None:
    """The CSRF token of a request: the X-CSRF-Token header, else a form's csrf_token field."""
    token = request.headers.get(CSRF_HEADER)
    if token:
        return token
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        if isinstance(value, str) and value:
            return value
    return None


def check_csrf(sent: str | None, expected: str | None) -> None:
    """Refuse (403) unless `sent` equals `expected` (compared in constant time)."""
    if not sent:
        raise ProblemError(
            403,
            "This request changes state, so it needs the dashboard's CSRF token in the "
            "X-CSRF-Token header. Reload the dashboard and try again.",
            missing="csrf_token",
        )
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ProblemError(
            403,
            "The CSRF token does not match this session. Reload the dashboard and try again.",
        )


def admin_gate(*, allowed_origins: Iterable[str], deny: Deny) -> Callable[..., Any]:
    """The dependency of every admin API route: admins only, CSRF-checked when cookie-borne.

    401 without a credential, 403 (and `deny` is told) for a caller who is not an admin,
    403 for a cookie-borne state change without the session's CSRF token or from elsewhere.
    """
    origins = tuple(allowed_origins)

    async def require_admin(request: Request) -> Caller:
        scope = request.scope
        caller = caller_of(scope)
        if caller is None:
            raise unauthorized(scope)
        if not caller.has(ACCESS_PERMISSION):
            await deny(caller, f"{request.method} {scope['path']}")
            raise ProblemError(
                403,
                f"The admin dashboard needs the admin role or permission "
                f"{ACCESS_PERMISSION!r}, which {caller.username!r} does not have.",
                missing_permissions=[ACCESS_PERMISSION],
            )
        if request.method not in SAFE_METHODS:
            session = session_of(scope)
            if session is not None:
                check_origin(scope, origins)
                check_csrf(await sent_csrf_token(request), session.csrf_token)
        return caller

    return require_admin

"""The dashboard's pages: sign-in, the dashboard itself, sign-out, and its static assets.

Pages are plain HTML filled in on the server; the dashboard's behaviour is one vanilla JS
module. Everything is served from this package (no CDN), under a Content-Security-Policy
that allows only this origin's own scripts, styles and connections.
"""

from __future__ import annotations

import hashlib
import html
import logging
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from nexus.http.identity import get_client_host
from nexus.http.problems import ProblemError
from nexus.plugins.admin.access import (
    ACCESS_PERMISSION,
    check_csrf,
    check_origin,
    sent_csrf_token,
    session_of,
)
from nexus.plugins.admin.session import (
    COOKIE,
    ERROR_KEY,
    LOGIN_CSRF_COOKIE,
    Caller,
    Sessions,
    caller_of,
    cookie_header,
    read_cookie,
)

if TYPE_CHECKING:
    from nexus.plugins.admin.operations import Operations
    from nexus.plugins.auth import Auth

STATIC: Final = Path(__file__).parent / "static"
#: The files served under /admin/static, with their media types.
ASSETS: Final = {
    "admin.css": "text/css; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_LOGIN_CSRF_MAX_AGE: Final = 3600
_MAX_FIELD: Final = 1024


@dataclass(frozen=True, slots=True)
class Asset:
    """A static file, read once, with a version for cache busting."""

    body: bytes
    media_type: str
    version: str


def load_assets() -> dict[str, Asset]:
    """Read the static files of the package."""
    assets = {}
    for name, media_type in ASSETS.items():
        body = (STATIC / name).read_bytes()
        assets[name] = Asset(body, media_type, hashlib.sha256(body).hexdigest()[:12])
    return assets


def _template(name: str) -> string.Template:
    return string.Template((STATIC / name).read_text(encoding="utf-8"))


class Pages:
    """Renders the HTML pages."""

    def __init__(self, assets: Mapping[str, Asset]) -> None:
        self._assets = assets
        self._login = _template("login.html")
        self._dashboard = _template("dashboard.html")
        self._forbidden = _template("forbidden.html")

    def _common(self) -> dict[str, str]:
        return {
            "css": f"/admin/static/admin.css?v={self._assets['admin.css'].version}",
            "js": f"/admin/static/admin.js?v={self._assets['admin.js'].version}",
            "icon": f"/admin/static/favicon.svg?v={self._assets['favicon.svg'].version}",
        }

    def login(self, csrf_token: str, *, message: str = "", username: str = "") -> str:
        """The sign-in form, with an error `message` if the last attempt failed."""
        return self._login.substitute(
            self._common(),
            csrf_token=html.escape(csrf_token),
            username=html.escape(username),
            message=html.escape(message),
            message_hidden="" if message else "hidden",
        )

    def dashboard(self, username: str, csrf_token: str) -> str:
        """The dashboard for a signed-in admin."""
        return self._dashboard.substitute(
            self._common(), username=html.escape(username), csrf_token=html.escape(csrf_token)
        )

    def forbidden(self, username: str, csrf_token: str) -> str:
        """The page for a signed-in user who is not an admin."""
        return self._forbidden.substitute(
            self._common(), username=html.escape(username), csrf_token=html.escape(csrf_token)
        )


def html_response(
    body: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    """An HTML page with the dashboard's CSP; same-origin requests keep their Origin header."""
    return HTMLResponse(
        body,
        status,
        headers={
            "Content-Security-Policy": PAGE_CSP,
            # The platform's default, no-referrer, makes browsers send `Origin: null` on
            # same-origin POSTs, which the CSRF defence could not tell from a forgery.
            "Referrer-Policy": "same-origin",
            **(headers or {}),
        },
    )


def build_pages(
    *,
    auth: Auth,
    sessions: Sessions,
    operations: Operations,
    allowed_origins: Iterable[str],
    session_lifetime: float,
    is_production: bool = False,
    logger: logging.Logger | None = None,
) -> APIRouter:
    """The routes of /admin itself: pages, sign-in and sign-out, static assets."""
    router = APIRouter(include_in_schema=False)
    assets = load_assets()
    pages = Pages(assets)
    origins = tuple(allowed_origins)
    log = logger or logging.getLogger("nexus.plugins.admin")
    warned: list[bool] = []

    def is_https(request: Request) -> bool:
        return request.scope.get("scheme") == "https"

    def sign_in_page(
        request: Request, status: int, message: str = "", username: str = ""
    ) -> HTMLResponse:
        token = read_cookie(request.scope, LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        cookies = [
            cookie_header(
                LOGIN_CSRF_COOKIE, token, max_age=_LOGIN_CSRF_MAX_AGE, secure=is_https(request)
            )
        ]
        if read_cookie(request.scope, COOKIE) is not None and session_of(request.scope) is None:
            cookies.append(_expired(COOKIE, is_https(request)))  # a session that has ended
        response = html_response(
            pages.login(token, message=message, username=username),
            status,
            headers={"WWW-Authenticate": 'Bearer realm="nexus"'} if status == 401 else None,
        )
        for cookie in cookies:
            response.headers.append("set-cookie", cookie)
        return response

    @router.get("")
    @router.get("/")
    async def dashboard(request: Request) -> Response:
        caller = caller_of(request.scope)
        if caller is None:
            state = request.scope.get("state") or {}
            return sign_in_page(request, 401, state.get(ERROR_KEY) or "")
        session = session_of(request.scope)
        csrf = session.csrf_token if session is not None else ""
        if not caller.has(ACCESS_PERMISSION):
            await _deny(operations, caller, "GET /admin")
            return html_response(pages.forbidden(caller.username, csrf), 403)
        if session is None:
            # A bearer token cannot be sent by a browser's page loads; sign in for a session.
            return sign_in_page(request, 401, "Sign in to open the dashboard.")
        return html_response(pages.dashboard(caller.username, csrf))

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        caller = caller_of(request.scope)
        if caller is not None and caller.has(ACCESS_PERMISSION) and session_of(request.scope):
            return RedirectResponse("/admin", 303)
        return sign_in_page(request, 200)

    @router.post("/login")
    async def login(request: Request) -> Response:
        from nexus.plugins.auth import InvalidCredentialsError, LoginThrottledError

        try:
            check_origin(request.scope, origins)
            check_csrf(
                await sent_csrf_token(request), read_cookie(request.scope, LOGIN_CSRF_COOKIE)
            )
        except ProblemError:
            if not _is_form(request):
                raise
            # A person at the form (say, one left open past its cookie's hour): show it again.
            message = "This sign-in form has expired or came from another site. Sign in again."
            return sign_in_page(request, 403, message)
        form = await request.form()
        username = _field(form.get("username")).strip()
        password = _field(form.get("password"))
        if not username or not password:
            return sign_in_page(request, 400, "Enter your username and password.", username)
        client_ip = get_client_host(request.scope)
        try:
            pair = await auth.login(username, password, client_ip=client_ip)
        except LoginThrottledError as exc:
            response = sign_in_page(request, 429, str(exc), username)
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        except InvalidCredentialsError as exc:
            return sign_in_page(request, 401, str(exc), username)
        principal = auth.authenticate_token(pair.access_token)
        if not principal.has(ACCESS_PERMISSION):
            await operations.announce(
                "login",
                actor=principal.username,
                resource="admin:dashboard",
                outcome="denied",
                client_ip=client_ip,
                missing=ACCESS_PERMISSION,
            )
            message = (
                f"{principal.username!r} may not use the admin dashboard: it needs the admin "
                f"role or permission {ACCESS_PERMISSION!r}."
            )
            return sign_in_page(request, 403, message, username)
        token, session = await sessions.start(
            principal, client_ip=client_ip, user_agent=request.headers.get("user-agent")
        )
        await operations.announce(
            "login",
            actor=principal.username,
            resource="admin:dashboard",
            outcome="success",
            client_ip=client_ip,
            session=session.id[:12],
        )
        signed_in = RedirectResponse("/admin", 303)
        secure = is_https(request)
        if is_production and not secure and not warned:
            warned.append(True)
            log.warning(
                "An admin signed in over plain http, so the session cookie travels unencrypted. "
                "Serve /admin over https (behind a proxy: list it in http.trusted_proxies so "
                "its X-Forwarded-Proto is believed)."
            )
        signed_in.headers.append(
            "set-cookie",
            cookie_header(COOKIE, token, max_age=int(session_lifetime), secure=secure),
        )
        signed_in.headers.append("set-cookie", _expired(LOGIN_CSRF_COOKIE, secure))
        return signed_in

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session = session_of(request.scope)
        if session is not None:
            check_origin(request.scope, origins)
            check_csrf(await sent_csrf_token(request), session.csrf_token)
            await sessions.end(session.id)
            await operations.announce(
                "logout",
                resource="admin:dashboard",
                outcome="success",
                session=session.id[:12],
            )
        response = RedirectResponse("/admin/login", 303)
        response.headers.append("set-cookie", _expired(COOKIE, is_https(request)))
        return response

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        asset = assets.get(name)
        if asset is None:
            raise ProblemError(404, f"No dashboard asset named {name!r}.")
        return Response(
            asset.body,
            media_type=asset.media_type,
            # URLs carry the content's hash, so a changed file is a new URL.
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return router


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    )


def _field(value: Any) -> str:
    return value[:_MAX_FIELD] if isinstance(value, str) else ""


def _expired(name: str, secure: bool) -> str:
    return cookie_header(name, "", max_age=0, secure=secure)


async def _deny(operations: Operations, caller: Caller, resource: str) -> None:
    await operations.announce(
        "access.denied", actor=caller.username, resource=resource, outcome="denied"
    )


def deny_callback(operations: Operations) -> Callable[[Caller, str], Any]:
    """What the API's admin check calls when a non-admin knocks."""

    async def deny(caller: Caller, resource: str) -> None:
        await _deny(operations, caller, resource)

    return deny

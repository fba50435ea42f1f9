"""Who gets into the dashboard: sign-in, session cookies, CSRF and Origin checks, sign-out."""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi.routing import APIRoute

from nexus import PluginState
from nexus.http.app import NexusApp
from nexus.plugins.admin import COOKIE
from nexus.testing import serve
from tests.plugins.admin.conftest import (
    ORIGIN,
    PASSWORD,
    AppFactory,
    admin_client,
    auth_of,
    create_users,
    login_token,
    sign_in,
)

#: Values for the path parameters of the admin API's routes.
_PARAMETERS = {"name": "probe", "operation": "disable", "letter_id": "nothing"}


def admin_routes(app: NexusApp) -> list[tuple[str, str]]:
    """(method, path) of every route the admin plugin serves under /admin/api."""
    found = []
    plugin_app = app.dispatcher.apps()["admin"]
    for route in plugin_app.router.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        candidates = [c.original_route for c in contexts()] if contexts else [route]
        for candidate in candidates:
            if not isinstance(candidate, APIRoute):
                continue
            path = candidate.path_format if hasattr(candidate, "path_format") else candidate.path
            if not path.startswith("/admin/api"):
                continue
            concrete = re.sub(r"\{(\w+)\}", lambda m: _PARAMETERS[m.group(1)], path)
            found.extend((method, concrete) for method in sorted(candidate.methods))
    return sorted(set(found))


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers of a response, by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


async def bearer(app: NexusApp, username: str) -> dict[str, str]:
    """An Authorization header with a fresh access token of `username`."""
    pair = await auth_of(app).login(username, PASSWORD, client_ip=None)
    return {"Authorization": f"Bearer {pair.access_token}"}


async def test_anonymous_callers_get_401_everywhere_and_change_nothing(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """Without a credential every API route answers a 401 problem, and the dashboard page 401."""
    app, client = served
    routes = admin_routes(app)
    assert ("POST", "/admin/api/plugins/probe/disable") in routes  # the enumeration works
    assert ("DELETE", "/admin/api/dead-letters/nothing") in routes
    assert len(routes) >= 14
    for method, path in routes:
        response = await client.request(method, path, headers={"Origin": ORIGIN})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "probe" not in response.text and "database" not in response.text
    page = await client.get("/admin")
    assert page.status_code == 401
    assert 'action="/admin/login"' in page.text and "plugin-rows" not in page.text
    assert app.kernel.plugins.status("probe").state is PluginState.ACTIVE


async def test_non_admins_get_403_everywhere_and_change_nothing(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """A signed-in user without admin:access gets 403 on every API route and on the page."""
    app, client = served
    headers = {**await bearer(app, "viewer"), "Origin": ORIGIN}
    for method, path in admin_routes(app):
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["missing_permissions"] == ["admin:access"]
    page = await client.get("/admin", headers=headers)
    assert page.status_code == 403
    assert "may not use the admin dashboard" in page.text and "plugin-rows" not in page.text
    assert app.kernel.plugins.status("probe").state is PluginState.ACTIVE


async def test_non_admin_sign_in_is_refused_without_a_session(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """The sign-in form refuses a valid non-admin account with 403 and sets no session cookie."""
    _, client = served
    response = await sign_in(client, "viewer")
    assert response.status_code == 403
    assert "may not use the admin dashboard" in response.text
    assert COOKIE not in set_cookies(response)
    assert (await client.get("/admin/api/session")).status_code == 401


async def test_wrong_password_is_refused(served: tuple[NexusApp, httpx.AsyncClient]) -> None:
    """A wrong password re-shows the form with the reason and status 401."""
    _, client = served
    form = await client.get("/admin/login")
    response = await client.post(
        "/admin/login",
        data={"username": "root", "password": "nope", "csrf_token": login_token(form.text)},
    )
    assert response.status_code == 401
    assert "Incorrect username or password." in response.text
    assert COOKIE not in set_cookies(response)


async def test_a_permission_holder_who_is_not_admin_gets_in(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """The permission admin:access alone opens the dashboard."""
    _, client = served
    await admin_client(client, "operator")
    assert (await client.get("/admin/api/plugins")).status_code == 200


async def test_session_cookie_flags_over_http(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """The session cookie is HttpOnly, SameSite=Strict, Path=/admin, and not Secure over http."""
    _, client = served
    response = await sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    cookie = set_cookies(response)[COOKIE]
    attributes = {part.strip().split("=")[0] for part in cookie.split(";")[1:]}
    assert attributes == {"Path", "Max-Age", "SameSite", "HttpOnly"}
    assert "Path=/admin;" in cookie and "SameSite=Strict" in cookie
    assert "Max-Age=28800" in cookie  # the default session lifetime, 8 h


async def test_session_cookie_is_secure_behind_a_trusted_https_proxy(
    make_app: AppFactory,
) -> None:
    """X-Forwarded-Proto: https from a trusted proxy makes the cookies Secure; from others not."""
    trusted = make_app(http={"trusted_proxies": ["127.0.0.1"]})
    async with serve(trusted) as client:
        await create_users(trusted)
        client.headers["X-Forwarded-Proto"] = "https"
        form = await client.get("/admin/login")
        assert "Secure" in form.headers["set-cookie"]
        token = login_token(form.text)
        # httpx (like a browser) keeps Secure cookies to https; the proxy spoke https for us.
        response = await client.post(
            "/admin/login",
            data={"username": "root", "password": PASSWORD, "csrf_token": token},
            headers={"Origin": "https://testserver", "Cookie": f"nexus_admin_csrf={token}"},
        )
        assert response.status_code == 303
        assert set_cookies(response)[COOKIE].endswith("; Secure")
    untrusted = make_app()
    async with serve(untrusted) as client:
        form = await client.get("/admin/login", headers={"X-Forwarded-Proto": "https"})
        assert "Secure" not in form.headers["set-cookie"]


async def test_state_changes_need_the_csrf_token(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """Cookie-borne POSTs without X-CSRF-Token, or with another token, get 403 and do nothing."""
    app, client = served
    token = await admin_client(client)
    path = "/admin/api/plugins/probe/disable"
    missing = await client.post(path, headers={"Origin": ORIGIN})
    assert missing.status_code == 403
    assert missing.headers["content-type"] == "application/problem+json"
    assert "CSRF token" in missing.json()["detail"]
    wrong = await client.post(path, headers={"Origin": ORIGIN, "X-CSRF-Token": token[::-1]})
    assert wrong.status_code == 403
    assert "does not match" in wrong.json()["detail"]
    assert app.kernel.plugins.status("probe").state is PluginState.ACTIVE
    ok = await client.post(path, headers={"Origin": ORIGIN, "X-CSRF-Token": token})
    assert ok.status_code == 200
    assert app.kernel.plugins.status("probe").state is PluginState.DISABLED


async def test_cross_origin_state_changes_are_refused(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """A right token from another Origin (or Origin: null) is still refused with 403."""
    app, client = served
    token = await admin_client(client)
    path = "/admin/api/plugins/probe/disable"
    for origin in ("https://evil.example", "null"):
        response = await client.post(path, headers={"Origin": origin, "X-CSRF-Token": token})
        assert response.status_code == 403, origin
        assert "Cross-site request refused" in response.json()["detail"]
    referer = await client.post(
        path, headers={"Referer": "https://evil.example/page", "X-CSRF-Token": token}
    )
    assert referer.status_code == 403
    assert app.kernel.plugins.status("probe").state is PluginState.ACTIVE


async def test_allowed_origins_extend_the_dashboards_own(make_app: AppFactory) -> None:
    """An origin listed in allowed_origins may send state changes."""
    app = make_app(admin={"allowed_origins": ["https://admin.example.com"]})
    async with serve(app) as client:
        await create_users(app)
        token = await admin_client(client)
        response = await client.post(
            "/admin/api/plugins/probe/reload",
            headers={"Origin": "https://admin.example.com", "X-CSRF-Token": token},
        )
        assert response.status_code == 200


async def test_sign_in_needs_the_forms_csrf_token(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """Posting credentials without the form's token (login CSRF) gets 403 and no session."""
    _, client = served
    await client.get("/admin/login")
    response = await client.post("/admin/login", data={"username": "root", "password": PASSWORD})
    assert response.status_code == 403
    assert "form has expired or came from another site" in response.text
    assert COOKIE not in set_cookies(response)
    scripted = await client.post("/admin/login", json={"username": "root"})
    assert scripted.status_code == 403
    assert scripted.headers["content-type"] == "application/problem+json"
    fresh = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
    async with fresh:  # a token of another browser does not match this one's cookie
        stolen = login_token((await client.get("/admin/login")).text)
        forged = await fresh.post(
            "/admin/login",
            data={"username": "root", "password": PASSWORD, "csrf_token": stolen},
        )
        assert forged.status_code == 403


async def test_sign_out_ends_the_session_everywhere(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """After sign-out the old cookie no longer works, even replayed by someone else."""
    _, client = served
    token = await admin_client(client)
    cookie = client.cookies.get(COOKIE, path="/admin")
    assert cookie is not None
    refused = await client.post("/admin/logout", headers={"Origin": ORIGIN})
    assert refused.status_code == 403  # sign-out needs the token too
    response = await client.post("/admin/logout", headers={"X-CSRF-Token": token})
    assert response.status_code == 303 and response.headers["location"] == "/admin/login"
    assert "Max-Age=0" in set_cookies(response)[COOKIE]
    replay = await client.get("/admin/api/plugins", headers={"Cookie": f"{COOKIE}={cookie}"})
    assert replay.status_code == 401
    assert "session has ended" in replay.json()["detail"]


async def test_a_form_may_send_the_token_as_a_field(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """The sign-out form works without JavaScript: csrf_token as a form field."""
    _, client = served
    token = await admin_client(client)
    response = await client.post(
        "/admin/logout", data={"csrf_token": token}, headers={"Origin": ORIGIN}
    )
    assert response.status_code == 303
    assert (await client.get("/admin/api/session")).status_code == 401


async def test_scripts_use_bearer_tokens_without_csrf(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """An admin's bearer token works on the API with no cookie and no CSRF token."""
    app, client = served
    headers = await bearer(app, "root")
    response = await client.post("/admin/api/plugins/probe/disable", headers=headers)
    assert response.status_code == 200
    assert app.kernel.plugins.status("probe").state is PluginState.DISABLED
    session = (await client.get("/admin/api/session", headers=headers)).json()
    assert session["username"] == "root" and session["csrf_token"] is None


async def test_a_user_who_loses_the_admin_role_is_refused(make_app: AppFactory) -> None:
    """Roles are re-read for each request (no cache here): a demoted admin gets 403 at once."""
    app = make_app(admin={"session_cache_ttl": 0})
    async with serve(app) as client:
        await create_users(app)
        await admin_client(client)
        auth = auth_of(app)
        [root] = [user for user in await auth.users() if user.username == "root"]
        await auth.set_user_roles(root.id, ["viewer"])
        assert (await client.get("/admin/api/plugins")).status_code == 403
        await auth.set_user_active(root.id, False)
        assert (await client.get("/admin/api/plugins")).status_code == 401


async def test_the_cookie_does_not_authenticate_other_plugins(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """Outside /admin the session cookie is ignored, so it is never ambient authority there."""
    _, client = served
    await admin_client(client)
    cookie = client.cookies.get(COOKIE, path="/admin")
    response = await client.get("/api/auth/me", headers={"Cookie": f"{COOKIE}={cookie}"})
    assert response.status_code == 401


async def test_admin_pages_and_api_are_not_cached(
    served: tuple[NexusApp, httpx.AsyncClient],
) -> None:
    """Pages and API answers say no-store; the page's CSP allows only this origin."""
    _, client = served
    await admin_client(client)
    page = await client.get("/admin")
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "same-origin"
    api: Any = await client.get("/admin/api/plugins")
    assert api.headers["cache-control"] == "no-store"
    asset = await client.get("/admin/static/admin.js")
    assert asset.headers["cache-control"].startswith("public")


async def test_only_listed_assets_are_served(served: tuple[NexusApp, httpx.AsyncClient]) -> None:
    """Static files are an allow-list: templates and source files are not served."""
    _, client = served
    for name in ("..%2Fplugin.py", "login.html", "nope.js"):
        assert (await client.get(f"/admin/static/{name}")).status_code == 404, name
    assert (await client.get("/admin/static/admin.css")).status_code == 200

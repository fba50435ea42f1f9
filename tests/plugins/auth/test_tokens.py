"""Access tokens: issued on login, verified on every request, forged or stale ones refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import jwt
import pytest

from nexus.testing import serve
from tests.plugins.auth.conftest import PASSWORD, AppFactory, auth_of, login

KEY = secrets.token_bytes(32)
SETTINGS = {"signing_key": base64.b64encode(KEY).decode(), "issuer": "nx", "audience": "api"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(user_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {
        "sub": user_id,
        "username": "ada",
        "roles": ["admin"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "j1",
        "iss": "nx",
        "aud": "api",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def hand_signed(
    header: dict[str, Any], payload: dict[str, Any], digest: Any = hashlib.sha256
) -> str:
    """A JWT with any header, HMAC-signed by hand with the real key (what an attacker tries)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(KEY, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_login_issues_tokens_that_authenticate(make_app: AppFactory) -> None:
    """A correct password yields an OAuth2 token response whose access token opens /me."""
    app = make_app(auth=SETTINGS)
    async with serve(app) as client:
        user = await auth_of(app).create_user("ada", PASSWORD, roles=["admin"])
        response = await login(client, "Ada")  # usernames ignore case
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        assert body["refresh_token"] and response.headers["cache-control"] == "no-store"
        decoded = jwt.decode(body["access_token"], KEY, algorithms=["HS256"], audience="api")
        assert decoded["sub"] == user.id and decoded["roles"] == ["admin"]
        assert decoded["iss"] == "nx" and decoded["exp"] - decoded["iat"] == 900
        me = await client.get(
            "/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert me.json() == {
            "id": user.id,
            "username": "ada",
            "kind": "user",
            "roles": ["admin"],
            "permissions": ["*"],
            "scopes": None,
        }


async def test_wrong_password_is_401(make_app: AppFactory) -> None:
    """A wrong password and an unknown user get the same 401 problem with a Bearer challenge."""
    app = make_app(auth=SETTINGS)
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        for username, password in [("ada", "wrong password!"), ("nobody", PASSWORD)]:
            response = await login(client, username, password)
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"] == 'Bearer realm="nexus"'
            assert response.json()["detail"] == "Incorrect username or password."


async def test_login_form_needs_the_password_grant(make_app: AppFactory) -> None:
    """The token endpoint follows OAuth2: grant_type must be "password"."""
    app = make_app(auth=SETTINGS)
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        form = {"grant_type": "client_credentials", "username": "ada", "password": PASSWORD}
        response = await client.post("/api/auth/token", data=form)
        assert response.status_code == 422


def expired(uid: str) -> str:
    return jwt.encode(claims(uid, exp=int(time.time()) - 3600), KEY, "HS256")


def other_key(uid: str) -> str:
    return jwt.encode(claims(uid), secrets.token_bytes(32), "HS256")


def tampered(uid: str) -> str:
    header, _, signature = jwt.encode(claims(uid), KEY, "HS256").split(".")
    payload = b64(json.dumps(claims(uid, roles=["admin", "root"])).encode())
    return f"{header}.{payload}.{signature}"


def unsigned(uid: str) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims(uid)).encode())}."


def rs256_confusion(uid: str) -> str:
    # The classic attack: claim an asymmetric algorithm, sign with HMAC and hope the
    # verifier picks the algorithm from the header.
    return hand_signed({"alg": "RS256", "typ": "JWT"}, claims(uid))


FORGERIES = [
    pytest.param(expired, "The access token has expired.", id="expired"),
    pytest.param(other_key, "The access token's signature does not verify.", id="another-key"),
    pytest.param(tampered, "The access token's signature does not verify.", id="tampered"),
    pytest.param(unsigned, "The access token is not signed with HS256.", id="alg-none"),
    pytest.param(
        rs256_confusion, "The access token is not signed with HS256.", id="rs256-confusion"
    ),
    pytest.param(
        lambda uid: hand_signed({"alg": "HS512", "typ": "JWT"}, claims(uid), hashlib.sha512),
        "The access token is not signed with HS256.",
        id="other-hmac-algorithm",
    ),
    pytest.param(
        lambda uid: jwt.encode(claims(uid, aud="other-api"), KEY, "HS256"),
        "The access token is for another audience.",
        id="wrong-audience",
    ),
    pytest.param(
        lambda uid: jwt.encode(claims(uid, iss="someone-else"), KEY, "HS256"),
        "The access token is from another issuer.",
        id="wrong-issuer",
    ),
    pytest.param(
        lambda uid: jwt.encode(claims(uid, exp=None), KEY, "HS256"),
        "The access token lacks the 'exp' claim.",
        id="no-expiry",
    ),
    pytest.param(lambda uid: "not-a-jwt", "The access token is malformed.", id="garbage"),
    # Correctly signed, but with claims no Nexus token has: refused, never a 500.
    pytest.param(
        lambda uid: jwt.encode(claims(uid, roles=["admin", 7]), KEY, "HS256"),
        "The access token's claims are malformed.",
        id="role-not-a-string",
    ),
    pytest.param(
        lambda uid: jwt.encode(claims(uid, roles=[{"name": "admin"}]), KEY, "HS256"),
        "The access token's claims are malformed.",
        id="unhashable-role",
    ),
    pytest.param(
        lambda uid: jwt.encode(claims(uid, roles="admin"), KEY, "HS256"),
        "The access token's claims are malformed.",
        id="roles-not-a-list",
    ),
    pytest.param(
        lambda uid: jwt.encode(claims(uid, username=None), KEY, "HS256"),
        "The access token's claims are malformed.",
        id="no-username",
    ),
]


async def test_forged_or_stale_tokens_are_401(make_app: AppFactory) -> None:
    """Expired, re-signed, tampered, unsigned and algorithm-swapped tokens are all refused."""
    app = make_app(auth=SETTINGS)
    async with serve(app) as client:
        user = await auth_of(app).create_user("ada", PASSWORD, roles=["admin"])
        genuine = jwt.encode(claims(user.id), KEY, "HS256")
        ok = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {genuine}"})
        assert ok.status_code == 200  # the same claims, honestly signed, are accepted
        for case in FORGERIES:
            forge, reason = case.values
            response = await client.get(
                "/api/auth/me", headers={"Authorization": f"Bearer {forge(user.id)}"}
            )
            assert (case.id, response.status_code) == (case.id, 401)
            assert (case.id, response.json()["detail"]) == (case.id, reason)
            assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_anonymous_me_is_401_with_challenge(make_app: AppFactory) -> None:
    """Without any credential /me answers 401 and says how to sign in."""
    app = make_app(auth=SETTINGS)
    async with serve(app) as client:
        response = await client.get("/api/auth/me")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="nexus"'
        basic = await client.get("/api/auth/me", headers={"Authorization": "Basic YWRhOng="})
        assert basic.status_code == 401
        assert "Bearer" in basic.json()["detail"]

"""Refresh tokens: rotated on use, a reused one revokes its family, logout revokes too."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from nexus.testing import serve
from tests.plugins.auth.conftest import PASSWORD, AppFactory, Recorder, auth_of, login


async def test_refresh_rotates_and_reuse_revokes_the_family(make_app: AppFactory) -> None:
    """A refresh token works once; presenting it again kills it and every successor."""
    recorder = Recorder()
    app = make_app(plugins=[recorder])
    async with serve(app) as client:
        user = await auth_of(app).create_user("ada", PASSWORD)
        first = (await login(client, "ada")).json()["refresh_token"]

        rotated = await client.post("/api/auth/refresh", json={"refresh_token": first})
        assert rotated.status_code == 200
        second = rotated.json()["refresh_token"]
        assert second != first
        me = await client.get(
            "/api/auth/me", headers={"Authorization": f"Bearer {rotated.json()['access_token']}"}
        )
        assert me.json()["username"] == "ada"

        reused = await client.post("/api/auth/refresh", json={"refresh_token": first})
        assert reused.status_code == 401
        assert "already used" in reused.json()["detail"]
        # The thief (or the victim) holding the newer token is signed out too.
        successor = await client.post("/api/auth/refresh", json={"refresh_token": second})
        assert successor.status_code == 401
        assert "revoked" in successor.json()["detail"]

        detected = await recorder.wait_for("auth.token.reuse_detected")
        assert detected[0]["actor"] == "ada" and detected[0]["user_id"] == user.id
        assert detected[0]["outcome"] == "denied"
        refreshed = await recorder.wait_for("auth.token.refreshed")
        assert refreshed[0]["family_id"] == detected[0]["family_id"]
        revoked = await recorder.wait_for("auth.token.revoked")
        assert revoked[0]["reason"] == "reuse detected"


async def test_other_sessions_survive_a_reuse(make_app: AppFactory) -> None:
    """Only the family of the reused token is revoked, not the user's other logins."""
    app = make_app()
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        phone = (await login(client, "ada")).json()["refresh_token"]
        laptop = (await login(client, "ada")).json()["refresh_token"]
        await client.post("/api/auth/refresh", json={"refresh_token": phone})
        await client.post("/api/auth/refresh", json={"refresh_token": phone})
        assert (
            await client.post("/api/auth/refresh", json={"refresh_token": laptop})
        ).status_code == 200


async def test_logout_revokes_the_session(make_app: AppFactory) -> None:
    """After logout the refresh token is refused; logging out twice is harmless."""
    recorder = Recorder()
    app = make_app(plugins=[recorder])
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        token = (await login(client, "ada")).json()["refresh_token"]
        assert (
            await client.post("/api/auth/logout", json={"refresh_token": token})
        ).status_code == 204
        assert (
            await client.post("/api/auth/logout", json={"refresh_token": token})
        ).status_code == 204
        refused = await client.post("/api/auth/refresh", json={"refresh_token": token})
        assert refused.status_code == 401
        assert refused.json()["detail"] == "The refresh token has been revoked. Sign in again."
        revoked = await recorder.wait_for("auth.token.revoked")
        assert revoked[0]["reason"] == "logout" and revoked[0]["actor"] == "ada"


async def test_unknown_and_expired_refresh_tokens_are_401(make_app: AppFactory) -> None:
    """A made-up token and one past its expiry are both refused."""
    app = make_app()
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        made_up = await client.post("/api/auth/refresh", json={"refresh_token": "x" * 43})
        assert made_up.status_code == 401
        assert made_up.json()["detail"] == "The refresh token is not valid."
        token = (await login(client, "ada")).json()["refresh_token"]
        async with auth_of(app).store.engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE auth_refresh_tokens SET expires_at = '2000-01-01 00:00:00'")
            )
        expired = await client.post("/api/auth/refresh", json={"refresh_token": token})
        assert expired.status_code == 401
        assert expired.json()["detail"] == "The refresh token has expired. Sign in again."


async def test_refresh_tokens_are_stored_hashed(make_app: AppFactory) -> None:
    """The database holds only a SHA-256 of each refresh token, never the token."""
    app = make_app()
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        token = (await login(client, "ada")).json()["refresh_token"]
        async with auth_of(app).store.engine.connect() as conn:
            stored = (
                await conn.execute(sa.text("SELECT token_hash FROM auth_refresh_tokens"))
            ).scalars()
            hashes = list(stored)
        assert len(hashes) == 1 and token not in hashes[0] and len(hashes[0]) == 64


async def test_disabling_a_user_revokes_their_sessions(make_app: AppFactory) -> None:
    """A disabled user's refresh tokens stop working."""
    app = make_app()
    async with serve(app) as client:
        user = await auth_of(app).create_user("ada", PASSWORD)
        token = (await login(client, "ada")).json()["refresh_token"]
        await auth_of(app).set_user_active(user.id, False)
        assert (
            await client.post("/api/auth/refresh", json={"refresh_token": token})
        ).status_code == 401


async def test_concurrent_writes_on_sqlite(make_app: AppFactory) -> None:
    """Simultaneous refreshes, logins and logouts on SQLite wait for each other, never fail."""
    app = make_app(auth={"login_burst": 100})
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        token = (await login(client, "ada")).json()["refresh_token"]
        others = [(await login(client, "ada")).json()["refresh_token"] for _ in range(3)]
        responses = await asyncio.gather(
            client.post("/api/auth/refresh", json={"refresh_token": token}),
            client.post("/api/auth/refresh", json={"refresh_token": token}),
            *(client.post("/api/auth/logout", json={"refresh_token": t}) for t in others),
            *(login(client, "ada") for _ in range(3)),
        )
        assert sorted(r.status_code for r in responses[:2]) == [200, 401]
        assert [r.status_code for r in responses[2:]] == [204] * 3 + [200] * 3

"""API keys: shown once, stored hashed, limited to their scopes, revocable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from nexus.http.app import NexusApp
from nexus.testing import serve
from tests.plugins.auth.conftest import (
    PASSWORD,
    AppFactory,
    Notes,
    Recorder,
    auth_of,
    bearer,
)


async def editor(app: NexusApp, client: httpx.AsyncClient) -> dict[str, str]:
    """A user whose role grants notes:read and notes:write; their Authorization header."""
    auth = auth_of(app)
    await auth.set_role("editor", ["notes:read", "notes:write"])
    await auth.create_user("ada", PASSWORD, roles=["editor"])
    return await bearer(client, "ada")


async def test_scoped_key_reaches_only_its_scopes(make_app: AppFactory) -> None:
    """A notes:read key reads notes (Bearer or X-API-Key) and gets 403 writing them."""
    app = make_app(plugins=[Notes()])
    async with serve(app) as client:
        headers = await editor(app, client)
        created = await client.post(
            "/api/auth/api-keys", headers=headers, json={"name": "reader", "scopes": ["notes:read"]}
        )
        assert created.status_code == 201
        key = created.json()["key"]
        assert key.startswith("nxk_" + created.json()["prefix"] + "_")

        for key_headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
            read = await client.get("/api/notes/notes", headers=key_headers)
            assert read.status_code == 200, read.text
            assert read.json()["actor"] == "ada"
            write = await client.post("/api/notes/notes", headers=key_headers)
            assert write.status_code == 403
            assert write.json()["missing_permissions"] == ["notes:write"]
        me = await client.get("/api/auth/me", headers={"X-API-Key": key})
        assert me.json()["kind"] == "api_key"
        assert me.json()["scopes"] == ["notes:read"] and me.json()["permissions"] == ["notes:read"]
        # The user's own token still writes.
        assert (await client.post("/api/notes/notes", headers=headers)).status_code == 200


async def test_keys_are_listed_without_secrets_and_revocable(make_app: AppFactory) -> None:
    """Listing never shows a secret or hash; a revoked key is refused at once."""
    recorder = Recorder()
    app = make_app(plugins=[Notes(), recorder])
    async with serve(app) as client:
        headers = await editor(app, client)
        created = (
            await client.post(
                "/api/auth/api-keys", headers=headers, json={"name": "ci", "scopes": ["notes:read"]}
            )
        ).json()
        key = created["key"]
        assert (await client.get("/api/notes/notes", headers={"X-API-Key": key})).status_code == 200

        listed = (await client.get("/api/auth/api-keys", headers=headers)).json()
        assert [k["id"] for k in listed] == [created["id"]]
        assert "key" not in listed[0] and key not in str(listed)
        async with auth_of(app).store.engine.connect() as conn:
            stored = str((await conn.execute(sa.text("SELECT * FROM auth_api_keys"))).all())
        assert key not in stored and key.split("_")[-1] not in stored

        revoked = await client.delete(f"/api/auth/api-keys/{created['id']}", headers=headers)
        assert revoked.status_code == 204
        refused = await client.get("/api/notes/notes", headers={"X-API-Key": key})
        assert refused.status_code == 401
        assert refused.json()["detail"] == "The API key has been revoked."
        again = await client.delete(f"/api/auth/api-keys/{created['id']}", headers=headers)
        assert again.status_code == 204  # revoking twice changes nothing
        missing = await client.delete("/api/auth/api-keys/nope", headers=headers)
        assert missing.status_code == 404

        made = await recorder.wait_for("auth.apikey.created")
        assert made[0]["actor"] == "ada" and made[0]["scopes"] == ["notes:read"]
        assert key not in str(made)
        gone = await recorder.wait_for("auth.apikey.revoked")
        assert gone[0]["key_id"] == created["id"] and gone[0]["outcome"] == "success"


async def test_key_scopes_cannot_exceed_the_creator(make_app: AppFactory) -> None:
    """Scopes must be permissions the creator holds; an API key cannot mint keys."""
    app = make_app(plugins=[Notes()])
    async with serve(app) as client:
        headers = await editor(app, client)
        too_much = await client.post(
            "/api/auth/api-keys",
            headers=headers,
            json={"name": "x", "scopes": ["notes:read", "plugins:manage"]},
        )
        assert too_much.status_code == 403
        assert "plugins:manage" in too_much.json()["detail"]
        key = (
            await client.post(
                "/api/auth/api-keys", headers=headers, json={"name": "k", "scopes": ["notes:read"]}
            )
        ).json()["key"]
        minted = await client.post(
            "/api/auth/api-keys",
            headers={"X-API-Key": key},
            json={"name": "child", "scopes": ["notes:read"]},
        )
        assert minted.status_code == 403
        assert "cannot create API keys" in minted.json()["detail"]


async def test_key_loses_scopes_its_user_loses(make_app: AppFactory) -> None:
    """A key's permissions are its scopes that its user still holds."""
    app = make_app(plugins=[Notes()], auth={"api_key_cache_ttl": 0})
    async with serve(app) as client:
        headers = await editor(app, client)
        key = (
            await client.post(
                "/api/auth/api-keys",
                headers=headers,
                json={"name": "k", "scopes": ["notes:read", "notes:write"]},
            )
        ).json()["key"]
        assert (
            await client.post("/api/notes/notes", headers={"X-API-Key": key})
        ).status_code == 200
        await auth_of(app).set_role("editor", ["notes:read"])
        assert (
            await client.post("/api/notes/notes", headers={"X-API-Key": key})
        ).status_code == 403
        assert (await client.get("/api/notes/notes", headers={"X-API-Key": key})).status_code == 200


async def test_expired_and_malformed_keys_are_401(make_app: AppFactory) -> None:
    """A key past its expiry, a key with a wrong secret and a malformed key are refused."""
    app = make_app(plugins=[Notes()])
    async with serve(app) as client:
        headers = await editor(app, client)
        past = datetime.now(UTC) - timedelta(minutes=1)
        refused = await client.post(
            "/api/auth/api-keys",
            headers=headers,
            json={"name": "old", "scopes": ["notes:read"], "expires_at": past.isoformat()},
        )
        assert refused.status_code == 400
        key = (
            await client.post(
                "/api/auth/api-keys",
                headers=headers,
                json={
                    "name": "short-lived",
                    "scopes": ["notes:read"],
                    "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                },
            )
        ).json()["key"]
        async with auth_of(app).store.engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE auth_api_keys SET expires_at = '2000-01-01 00:00:00'")
            )
        expired = await client.get("/api/notes/notes", headers={"X-API-Key": key})
        assert expired.json()["detail"] == "The API key has expired."
        forged = key[: key.rindex("_") + 1] + "A" * 43
        wrong = await client.get("/api/notes/notes", headers={"X-API-Key": forged})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "The API key is not valid."
        malformed = await client.get("/api/notes/notes", headers={"X-API-Key": "nxk_zz"})
        assert malformed.json()["detail"] == "The API key is malformed."

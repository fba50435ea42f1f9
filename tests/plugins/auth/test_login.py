"""Logging in: password hashing, throttling, events, and no account until one is created."""

from __future__ import annotations

import argon2
import pytest
import sqlalchemy as sa

from nexus.http.app import NexusApp
from nexus.plugins.auth import PasswordPolicyError, UserExistsError
from nexus.plugins.auth.settings import AuthSettings
from nexus.testing import serve
from tests.plugins.auth.conftest import PASSWORD, AppFactory, Recorder, auth_of, login


async def stored_hash(app: NexusApp, username: str) -> str:
    engine = auth_of(app).store.engine
    async with engine.connect() as conn:
        query = sa.text("SELECT password_hash FROM auth_users WHERE username = :u")
        return str(await conn.scalar(query, {"u": username}))


async def test_fresh_install_has_no_credentials(make_app: AppFactory) -> None:
    """No default account exists: zero users, and the token endpoint refuses everything."""
    app = make_app()
    async with serve(app) as client:
        assert await auth_of(app).users() == []
        for username, password in [("admin", "admin"), ("admin", "password"), ("root", "")]:
            response = await login(client, username, password)
            assert response.status_code in (401, 422)
            assert "access_token" not in response.text


async def test_passwords_are_stored_as_argon2id(make_app: AppFactory) -> None:
    """The stored hash is argon2id, never the password, and verifies against it."""
    app = make_app()
    async with serve(app):
        await auth_of(app).create_user("ada", PASSWORD)
        hashed = await stored_hash(app, "ada")
        assert hashed.startswith("$argon2id$")
        assert PASSWORD not in hashed
        assert argon2.PasswordHasher().verify(hashed, PASSWORD)


async def test_login_rehashes_when_parameters_change(make_app: AppFactory) -> None:
    """After the argon2 parameters are raised, the next login re-hashes with the new ones."""
    app = make_app()
    async with serve(app):
        await auth_of(app).create_user("ada", PASSWORD)
        old = await stored_hash(app, "ada")
    stronger = {"time_cost": 2, "memory_cost": 2048, "parallelism": 1}
    app = make_app(auth={"password_hashing": stronger})
    async with serve(app) as client:
        assert (await login(client, "ada")).status_code == 200
        new = await stored_hash(app, "ada")
        assert new != old and "$m=2048,t=2,p=1$" in new
        assert (await login(client, "ada")).status_code == 200


async def test_default_hashing_is_rfc_9106_low_memory() -> None:
    """Unconfigured, passwords are hashed with argon2-cffi's RFC 9106 low-memory profile."""
    profile = argon2.profiles.RFC_9106_LOW_MEMORY
    hashing = AuthSettings().password_hashing
    assert (hashing.time_cost, hashing.memory_cost, hashing.parallelism) == (
        profile.time_cost,
        profile.memory_cost,
        profile.parallelism,
    )
    assert (hashing.hash_len, hashing.salt_len) == (profile.hash_len, profile.salt_len)


async def test_user_creation_validates(make_app: AppFactory) -> None:
    """Short passwords, taken names (in any case), bad names and unknown roles are refused."""
    app = make_app(auth={"password_min_length": 16})
    async with serve(app):
        auth = auth_of(app)
        with pytest.raises(PasswordPolicyError, match="needs at least 16"):
            await auth.create_user("ada", "short password")
        await auth.create_user("ada", "a long enough password")
        with pytest.raises(UserExistsError, match="'ADA' already exists"):
            await auth.create_user("ADA", "a long enough password")
        with pytest.raises(ValueError, match="is not allowed"):
            await auth.create_user("ada lovelace", "a long enough password")
        with pytest.raises(ValueError, match="Unknown role"):
            await auth.create_user("bob", "a long enough password", roles=["wizard"])
        assert [u.username for u in await auth.users()] == ["ada"]


async def test_brute_force_is_throttled(make_app: AppFactory) -> None:
    """After the burst of wrong passwords, even the right one gets 429 with Retry-After."""
    recorder = Recorder()
    app = make_app(auth={"login_burst": 3, "login_rate": 0.001}, plugins=[recorder])
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        statuses = [(await login(client, "ada", "guess number 1")).status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        response = await login(client, "ada")
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["content-type"] == "application/problem+json"
        # Another user is throttled separately (per username and IP).
        await auth_of(app).create_user("bob", PASSWORD)
        assert (await login(client, "bob")).status_code == 200
        throttled = await recorder.wait_for("auth.login.throttled")
        assert throttled[0]["actor"] == "ada"
        assert throttled[0]["outcome"] == "throttled"


async def test_logins_publish_events(make_app: AppFactory) -> None:
    """Successful and failed logins are published with actor, resource, outcome and client."""
    recorder = Recorder()
    app = make_app(plugins=[recorder])
    async with serve(app) as client:
        user = await auth_of(app).create_user("ada", PASSWORD)
        request_id = (await login(client, "ada")).headers["x-request-id"]
        await login(client, "ada", "not the password")
        succeeded = await recorder.wait_for("auth.login.succeeded")
        failed = await recorder.wait_for("auth.login.failed")
        assert succeeded == [
            {
                "actor": "ada",
                "resource": "user:ada",
                "outcome": "success",
                "user_id": user.id,
                "client_ip": "127.0.0.1",
            }
        ]
        assert failed[0]["actor"] == "ada" and failed[0]["outcome"] == "failure"
        assert failed[0]["reason"] == "wrong password"
        created = await recorder.wait_for("auth.user.created")
        assert created[0]["username"] == "ada" and created[0]["actor"] == "system"
        event = next(e for e in recorder.events if e.type == "auth.login.succeeded")
        assert event.correlation_id == request_id and event.source == "auth"


async def test_disabled_user_cannot_sign_in(make_app: AppFactory) -> None:
    """A disabled user's correct password is refused like a wrong one."""
    app = make_app()
    async with serve(app) as client:
        auth = auth_of(app)
        user = await auth.create_user("ada", PASSWORD)
        await auth.set_user_active(user.id, False)
        assert (await login(client, "ada")).status_code == 401
        await auth.set_user_active(user.id, True)
        assert (await login(client, "ada")).status_code == 200

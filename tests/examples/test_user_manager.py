"""The example user_manager plugin: registration, its limit, email verification tokens."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import sqlalchemy as sa
import yaml

from nexus.http.app import create_app, load_app_config
from nexus.plugins.database import DATABASE
from nexus.testing import EventRecorder, serve
from tests.examples.conftest import EXAMPLES, AppMaker, database_plugin

API = "/api/user_manager"
USER_MANAGER = ("user_manager",)
ADA = {"email": "Ada@Example.com", "name": "Ada Lovelace", "password": "analytical engine"}


async def register(client: httpx.AsyncClient, email: str = "ada@example.com") -> httpx.Response:
    return await client.post(f"{API}/users", json={**ADA, "email": email})


async def test_registering_stores_the_user_and_publishes_the_steps(make_app: AppMaker) -> None:
    """A registration answers 201 with the user, publishes started then created with a token."""
    app = make_app(only=USER_MANAGER)
    recorder = EventRecorder(app, "user.**")
    async with serve(app) as client:
        response = await client.post(f"{API}/users", json=ADA)
        assert response.status_code == 201
        user = response.json()
        assert user["email"] == "ada@example.com" and user["name"] == "Ada Lovelace"
        assert user["verified"] is False and user["verified_at"] is None
        assert response.headers["location"] == f"{API}/users/{user['id']}"
        assert (await client.get(response.headers["location"])).json() == user

        [created] = await recorder.wait_for("user.created")
        assert recorder.topics() == ["user.registration.started", "user.created"]
        token = created.data.pop("verification_token")
        assert len(token) >= 40
        assert created.data == {
            "id": user["id"],
            "email": "ada@example.com",
            "name": "Ada Lovelace",
        }
        assert created.correlation_id == response.headers["x-request-id"]

        async with app.kernel.services.get(DATABASE).engine.connect() as conn:
            stored = (await conn.execute(sa.text("SELECT * FROM user_manager_users"))).mappings()
            [row] = stored.all()
        assert row["password_hash"].startswith("scrypt$")
        assert ADA["password"] not in row["password_hash"]
        assert token not in str(dict(row))


async def test_without_verification_users_start_verified(make_app: AppMaker) -> None:
    """With email_verification off a user is verified at once and no token is published."""
    app = make_app(only=USER_MANAGER, user_manager={"email_verification": False})
    recorder = EventRecorder(app, "user.created")
    async with serve(app) as client:
        user = (await register(client)).json()
        assert user["verified"] is True
        [created] = await recorder.wait_for("user.created")
        assert "verification_token" not in created.data


async def test_registering_past_max_users_names_the_limit_and_setting(make_app: AppMaker) -> None:
    """The registration after `max_users` is a 409 problem naming the limit and its setting."""
    app = make_app(only=USER_MANAGER, user_manager={"max_users": 1})
    recorder = EventRecorder(app, "user.registration.failed")
    async with serve(app) as client:
        assert (await register(client, "one@example.com")).status_code == 201
        refused = await register(client, "two@example.com")
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["title"] == "User limit reached"
        assert problem["max_users"] == 1
        assert problem["setting"] == "plugins.user_manager.max_users"
        assert problem["detail"] == (
            "Registration is closed: the user limit of 1 is reached "
            "(setting plugins.user_manager.max_users)."
        )
        [failed] = await recorder.wait_for("user.registration.failed")
        assert failed.data == {"email": "two@example.com", "reason": "max_users"}


async def test_an_email_registers_once_whatever_its_case(make_app: AppMaker) -> None:
    """A second registration of an address, in any letter case, is a 409 problem."""
    app = make_app(only=USER_MANAGER)
    async with serve(app) as client:
        assert (await register(client, "ada@example.com")).status_code == 201
        again = await register(client, "ADA@example.COM")
        assert again.status_code == 409
        assert again.json()["title"] == "Email already registered"


async def test_invalid_registrations_are_refused_with_the_fields(make_app: AppMaker) -> None:
    """A malformed email, an empty name or a short password is a 422 problem naming the field."""
    app = make_app(only=USER_MANAGER)
    async with serve(app) as client:
        for body, field in (
            ({"email": "not-an-address", "name": "Ada"}, "email"),
            ({"email": "ada@example.com", "name": ""}, "name"),
            ({"email": "ada@example.com", "name": "Ada", "password": "short"}, "password"),
        ):
            response = await client.post(f"{API}/users", json=body)
            assert response.status_code == 422
            assert [e["loc"] for e in response.json()["errors"]] == [["body", field]]


async def test_a_verification_token_works_exactly_once(make_app: AppMaker) -> None:
    """Following the token verifies the user and publishes user.verified; reusing it is a 400."""
    app = make_app(only=USER_MANAGER)
    recorder = EventRecorder(app, "user.*")
    async with serve(app) as client:
        user = (await register(client)).json()
        [created] = await recorder.wait_for("user.created")
        token = created.data["verification_token"]

        verified = await client.get(f"{API}/verify", params={"token": token})
        assert verified.status_code == 200
        assert verified.json()["verified"] is True and verified.json()["id"] == user["id"]
        [event] = await recorder.wait_for("user.verified")
        assert event.data == {"id": user["id"], "email": "ada@example.com"}
        assert (await client.get(f"{API}/users/{user['id']}")).json()["verified"] is True

        reused = await client.get(f"{API}/verify", params={"token": token})
        assert reused.status_code == 400
        assert reused.headers["content-type"] == "application/problem+json"
        assert reused.json()["detail"] == (
            "This verification link is not valid, or it was used already."
        )
        assert len(recorder.matching("user.verified")) == 1


async def test_unknown_or_missing_tokens_are_problems(make_app: AppMaker) -> None:
    """An unknown token is a 400 problem, a missing one a 422, and nobody gets verified."""
    app = make_app(only=USER_MANAGER)
    async with serve(app) as client:
        user = (await register(client)).json()
        assert (await client.get(f"{API}/verify", params={"token": "guess"})).status_code == 400
        assert (await client.get(f"{API}/verify")).status_code == 422
        assert (await client.get(f"{API}/users/{user['id']}")).json()["verified"] is False


async def test_an_expired_token_is_gone(make_app: AppMaker) -> None:
    """A token past its expiry is a 410 problem and leaves the user unverified."""
    app = make_app(only=USER_MANAGER)
    recorder = EventRecorder(app, "user.created")
    async with serve(app) as client:
        user = (await register(client)).json()
        [created] = await recorder.wait_for("user.created")
        async with app.kernel.services.get(DATABASE).engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE user_manager_users SET verification_expires_at = :past"),
                {"past": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)},
            )
        expired = await client.get(
            f"{API}/verify", params={"token": created.data["verification_token"]}
        )
        assert expired.status_code == 410
        assert expired.json()["detail"] == "This verification link has expired."
        assert (await client.get(f"{API}/users/{user['id']}")).json()["verified"] is False


async def test_an_unknown_user_is_a_404_problem(make_app: AppMaker) -> None:
    """Looking up an id nobody has is a 404 problem naming the id."""
    app = make_app(only=USER_MANAGER)
    async with serve(app) as client:
        response = await client.get(f"{API}/users/nobody")
        assert response.status_code == 404
        assert response.json()["detail"] == "No user has id 'nobody'."


async def test_a_config_reload_changes_the_limit_without_a_restart(tmp_path: Path) -> None:
    """Raising max_users in nexus.yaml and reloading lets the next registration in, unrestarted."""
    config_file = tmp_path / "nexus.yaml"

    def configure(max_users: int) -> None:
        document = {
            "plugin_paths": [str(EXAMPLES / "plugins")],
            "data_dir": "data",
            "kernel": {"entry_points": False},
            "plugins": {
                "user_manager": {"max_users": max_users},
                "email_service": {"enabled": False},
                "analytics": {"enabled": False},
            },
        }
        config_file.write_text(yaml.safe_dump(document))

    configure(1)
    app = create_app(load_app_config(config_file, env={}), plugins=[database_plugin()])
    changes: list[tuple[str, str]] = []
    async with serve(app) as client:
        app.kernel.plugins.add_listener(
            lambda name, old, new, operation: changes.append((name, new.value))
        )
        assert (await register(client, "one@example.com")).status_code == 201
        assert (await register(client, "two@example.com")).status_code == 409
        configure(2)
        assert await app.kernel.reload_config() == {"user_manager"}
        assert (await register(client, "two@example.com")).status_code == 201
        assert changes == []

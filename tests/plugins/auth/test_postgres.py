"""The auth plugin on a real PostgreSQL server: the same flows, and the refresh race."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from nexus.plugins.auth import UserExistsError
from nexus.testing import serve
from tests.plugins.auth.conftest import PASSWORD, AppFactory, Notes, auth_of, bearer, login


@pytest.fixture
async def database_url(postgres_server: Any) -> str:
    """A fresh database of its own on the session's PostgreSQL server."""
    name = f"auth_{secrets.token_hex(4)}"
    engine = create_async_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return str(postgres_server.url).rsplit("/", 1)[0] + f"/{name}"


async def test_flows_on_postgresql(make_app: AppFactory, database_url: str) -> None:
    """Login, case-insensitive names, refresh reuse detection and API keys work on PostgreSQL."""
    app = make_app(database={"url": database_url}, plugins=[Notes()])
    async with serve(app) as client:
        auth = auth_of(app)
        await auth.set_role("reader", ["notes:read"])
        await auth.create_user("Ada", PASSWORD, roles=["reader"])
        with pytest.raises(UserExistsError):
            await auth.create_user("ada", PASSWORD)
        headers = await bearer(client, "ADA")
        key = (
            await client.post(
                "/api/auth/api-keys", headers=headers, json={"name": "k", "scopes": ["notes:read"]}
            )
        ).json()["key"]
        assert (await client.get("/api/notes/notes", headers={"X-API-Key": key})).status_code == 200
        assert (
            await client.post("/api/notes/notes", headers={"X-API-Key": key})
        ).status_code == 403

        first = (await login(client, "ada")).json()["refresh_token"]
        second = (await client.post("/api/auth/refresh", json={"refresh_token": first})).json()
        assert (
            await client.post("/api/auth/refresh", json={"refresh_token": first})
        ).status_code == 401
        assert (
            await client.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]})
        ).status_code == 401


async def test_concurrent_refreshes_with_one_token(make_app: AppFactory, database_url: str) -> None:
    """Of two simultaneous refreshes with one token exactly one wins; the loser revokes the family."""
    app = make_app(database={"url": database_url})
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        token = (await login(client, "ada")).json()["refresh_token"]
        responses = await asyncio.gather(
            *(client.post("/api/auth/refresh", json={"refresh_token": token}) for _ in range(2))
        )
        assert sorted(r.status_code for r in responses) == [200, 401]
        winner = next(r for r in responses if r.status_code == 200).json()["refresh_token"]
        assert (
            await client.post("/api/auth/refresh", json={"refresh_token": winner})
        ).status_code == 401

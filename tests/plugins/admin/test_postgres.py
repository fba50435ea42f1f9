"""The dashboard on PostgreSQL: sessions shared by instances, and ended for all by a sign-out."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from nexus import PluginState
from nexus.plugins.admin import COOKIE
from nexus.testing import serve
from tests.plugins.admin.conftest import ORIGIN, AppFactory, admin_client, create_users


@pytest.fixture
async def database_url(postgres_server: Any) -> str:
    """A fresh database of its own on the session's PostgreSQL server."""
    name = f"admin_{secrets.token_hex(4)}"
    engine = create_async_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return str(postgres_server.url).rsplit("/", 1)[0] + f"/{name}"


async def test_a_session_works_on_every_instance_and_ends_everywhere(
    make_app: AppFactory, database_url: str, tmp_path: Path
) -> None:
    """Signed in on one instance, the cookie works on another; signing out ends it on both."""
    database = {"url": database_url}
    first = make_app(database=database, data_dir=tmp_path / "one")
    second = make_app(database=database, data_dir=tmp_path / "two", admin={"session_cache_ttl": 0})
    async with serve(first) as one, serve(second) as two:
        await create_users(first)
        token = await admin_client(one)
        cookie = {"Cookie": f"{COOKIE}={one.cookies.get(COOKIE, path='/admin')}"}
        disabled = await two.post(
            "/admin/api/plugins/probe/disable",
            headers={**cookie, "X-CSRF-Token": token, "Origin": ORIGIN},
        )
        assert disabled.status_code == 200
        assert second.kernel.plugins.status("probe").state is PluginState.DISABLED
        assert first.kernel.plugins.status("probe").state is PluginState.ACTIVE  # its own
        signed_out = await one.post("/admin/logout", headers={"X-CSRF-Token": token})
        assert signed_out.status_code == 303
        assert (await two.get("/admin/api/plugins", headers=cookie)).status_code == 401

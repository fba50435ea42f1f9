"""Fault injection through the real app: the database and Redis lost and back, bad handlers.

Plugin failures at each lifecycle stage, during reload and teardown are proven in
tests/kernel/test_lifecycle.py and tests/kernel/test_reload.py; several instances in
tests/cluster/. Here: what the user sees, what is logged, and that nothing committed is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import APIRouter

from nexus import Plugin, PluginContext
from nexus.http.problems import PROBLEM_CONTENT_TYPE
from nexus.plugins.database import DATABASE, DatabasePlugin, DbSession
from nexus.testing import create_test_app, serve
from nexus.testing.servers import (
    PostgresServer,
    ServerUnavailable,
    free_port,
    postgres_server,
    services_required,
    wait_for_port,
)
from nexus.testing.servers import _as_postgres as as_postgres
from tests.conftest import builtin_plugin


class Notes(Plugin):
    """Stores notes through DbSession; needs the database."""

    manifest = {
        "name": "notes",
        "version": "1.0.0",
        "description": "Notes in the database",
        "requires": {"database": ">=1.0"},
        "permissions": ["services:use:database"],
    }

    async def setup(self, ctx: PluginContext[Any]) -> None:
        async with ctx.services.get(DATABASE).engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS notes (body TEXT)"))
        router = APIRouter()

        @router.post("/notes/{body}", status_code=201)
        async def add(body: str, session: DbSession) -> dict[str, str]:
            await session.execute(sa.text("INSERT INTO notes VALUES (:b)"), {"b": body})
            return {"body": body}

        @router.get("/notes")
        async def notes(session: DbSession) -> list[str]:
            rows = await session.execute(sa.text("SELECT body FROM notes ORDER BY body"))
            return [row[0] for row in rows]

        ctx.http.include_router(router)


class Echo(Plugin):
    """Needs nothing: it must keep serving whatever else fails."""

    manifest = {"name": "echo", "version": "1.0.0", "description": "Answers"}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.get("/ping")
        async def ping() -> dict[str, bool]:
            return {"pong": True}

        ctx.http.include_router(router)


def database_app(url: str, tmp_path: Path) -> Any:
    return create_test_app(
        plugins=[builtin_plugin(DatabasePlugin), Notes(), Echo()],
        config={
            "data_dir": str(tmp_path),
            "plugins": {"database": {"url": url, "connect_timeout": 2, "health_timeout": 1}},
            "http": {"rate_limit": {"enabled": False}},
        },
    )


@contextlib.contextmanager
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server this test may stop and start (not the session's shared one)."""
    try:
        manager = postgres_server()
        server = manager.__enter__()
    except ServerUnavailable as exc:
        if services_required():
            pytest.fail(f"{exc}; NEXUS_REQUIRE_SERVICES=1 makes this a failure")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        manager.__exit__(None, None, None)


def pg_ctl(server: PostgresServer, *args: str) -> None:
    root = server.data_dir.parent
    options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    command = [server.pg_ctl, "-D", str(server.data_dir), "-o", options, "-w", *args]
    subprocess.run(as_postgres(command), check=True, capture_output=True)


async def test_database_unreachable_at_startup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database nobody listens on: it fails, its dependents are blocked, the rest serve."""
    url = f"postgresql+asyncpg://nexus@127.0.0.1:{free_port()}/postgres"
    caplog.set_level(logging.WARNING)
    async with serve(database_app(url, tmp_path)) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        plugins = ready.json()["plugins"]
        assert plugins["database"]["state"] == "failed"
        assert plugins["notes"]["state"] == "blocked"
        assert plugins["echo"]["state"] == "active"
        assert (await client.get("/api/echo/ping")).json() == {"pong": True}
        missing = await client.get("/api/notes/notes")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == PROBLEM_CONTENT_TYPE
    failures = [
        r for r in caplog.records if r.levelno >= logging.ERROR and "database" in r.getMessage()
    ]
    assert failures, [r.getMessage() for r in caplog.records]
    assert "password" not in caplog.text.lower()


async def test_database_lost_mid_request_then_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL stopped: DbSession routes answer 503 problems, /readyz is not ready; restarted:
    the same app serves again and every committed row is there."""
    with own_postgres() as server:
        async with serve(database_app(server.url, tmp_path)) as client:
            assert (await client.post("/api/notes/notes/before")).status_code == 201
            pg_ctl(server, "-m", "fast", "stop")
            caplog.set_level(logging.WARNING)
            down = await client.post("/api/notes/notes/during")
            assert down.status_code == 503, down.text
            assert down.headers["content-type"] == PROBLEM_CONTENT_TYPE
            assert "traceback" not in down.json()
            assert int(down.headers["retry-after"]) >= 1
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["plugins"]["database"]["healthy"] is False
            assert (await client.get("/api/echo/ping")).status_code == 200
            pg_ctl(server, "-l", str(server.data_dir.parent / "log"), "start")
            wait_for_port(server.port)
            for _ in range(50):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.post("/api/notes/notes/after")).status_code == 201
            assert (await client.get("/api/notes/notes")).json() == ["after", "before"]
    assert any(r.levelno >= logging.WARNING for r in caplog.records)

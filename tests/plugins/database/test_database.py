"""The Database service: sessions, health, URLs, and passwords kept out of every message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text

import nexus.plugins.database
from nexus import Plugin, PluginContext, PluginState
from nexus.kernel import Kernel, load_config
from nexus.plugins.database import (
    DATABASE,
    Database,
    DatabaseSettings,
    DatabaseURLError,
)
from nexus.testing import create_test_app, create_test_kernel, serve
from nexus.testing.servers import free_port
from tests.plugins.database.conftest import database_plugin

PASSWORD = "hunter2-Secret"


def test_public_names_are_pinned() -> None:
    """`nexus.plugins.database.__all__` is sorted and exactly the names other plugins use."""
    assert nexus.plugins.database.__all__ == [
        "DATABASE",
        "Database",
        "DatabaseError",
        "DatabasePlugin",
        "DatabaseSettings",
        "DatabaseURLError",
        "DbSession",
        "MigrationError",
    ]


@contextlib.asynccontextmanager
async def open_database(url: str) -> AsyncIterator[Database]:
    database = Database.from_settings(DatabaseSettings(url=SecretStr(url)))
    try:
        yield database
    finally:
        await database.dispose()


async def test_session_commits_on_success_and_rolls_back_on_error(database_url: str) -> None:
    """Work in a session is kept when the block ends normally and discarded when it raises."""
    async with open_database(database_url) as database:
        async with database.session() as session:
            await session.execute(text("CREATE TABLE items (name VARCHAR(20) NOT NULL)"))
            await session.execute(text("INSERT INTO items VALUES ('kept')"))
        with contextlib.suppress(LookupError):
            async with database.session() as session:
                await session.execute(text("INSERT INTO items VALUES ('discarded')"))
                raise LookupError("the handler failed after writing")
        async with database.session() as session:
            names = (await session.execute(text("SELECT name FROM items"))).scalars().all()
    assert names == ["kept"]


async def test_dialect_and_ping_answer_for_each_backend(database_url: str) -> None:
    """`dialect` names the backend and `ping` succeeds against a live database."""
    async with open_database(database_url) as database:
        await database.ping(timeout=5)
        assert database.dialect == database_url.split("+")[0]


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    """SQLite connections use write-ahead logging and enforce foreign keys."""
    async with (
        open_database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}") as database,
        database.engine.connect() as conn,
    ):
        journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        foreign_keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    assert (journal, foreign_keys) == ("wal", 1)


async def test_default_database_is_a_sqlite_file_in_the_plugin_data_dir(tmp_path: Path) -> None:
    """Without a URL the plugin uses <data_dir>/plugins/database/nexus.db."""
    kernel = create_test_kernel(plugins=[database_plugin()], config={"data_dir": str(tmp_path)})
    async with kernel:
        assert kernel.plugins.status("database").state is PluginState.ACTIVE
        database = kernel.services.get(DATABASE)
        assert database.dialect == "sqlite"
        assert database.url == f"sqlite+aiosqlite:///{tmp_path}/plugins/database/nexus.db"
        assert await database.current() == {}  # the plugin created nexus_migrations
    assert (tmp_path / "plugins" / "database" / "nexus.db").is_file()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            f"mysql://root:{PASSWORD}@127.0.0.1/app",
            "plugins.database.url uses 'mysql', which is not supported. Use "
            "sqlite+aiosqlite:///path/to/nexus.db (SQLite) or "
            "postgresql+asyncpg://user:password@host:5432/name (PostgreSQL).",
        ),
        (
            f"not a url {PASSWORD}",
            "plugins.database.url is not a database URL. Use sqlite+aiosqlite:///",
        ),
    ],
)
def test_unsupported_urls_are_refused_naming_the_supported_ones(url: str, message: str) -> None:
    """Another scheme, or no URL at all, is an error that lists what works and hides the URL."""
    with pytest.raises(DatabaseURLError) as caught:
        Database.from_settings(DatabaseSettings(url=SecretStr(url)))
    assert str(caught.value).startswith(message)
    assert PASSWORD not in str(caught.value)


def test_plain_driver_names_select_the_async_drivers(tmp_path: Path) -> None:
    """postgres:// and sqlite:// URLs are served by asyncpg and aiosqlite."""
    postgres = Database.from_settings(
        DatabaseSettings(url=SecretStr(f"postgres://app:{PASSWORD}@127.0.0.1:5432/app"))
    )
    sqlite = Database.from_settings(DatabaseSettings(url=SecretStr(f"sqlite:///{tmp_path}/a.db")))
    assert postgres.url == "postgresql+asyncpg://app:***@127.0.0.1:5432/app"
    assert sqlite.url == f"sqlite+aiosqlite:///{tmp_path}/a.db"


class Dependent(Plugin):
    """Requires the database (and is blocked without it)."""

    manifest = {
        "name": "dependent",
        "version": "1.0",
        "requires": {"database": ">=1.0"},
        "permissions": ["services:use:database"],
    }

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.services.get(DATABASE)


async def test_unreachable_server_fails_setup_without_showing_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A URL at a closed port fails the plugin with the reason; its password is never shown."""
    port = free_port()
    url = f"postgresql+asyncpg://nexus:{PASSWORD}@127.0.0.1:{port}/app"
    caplog.set_level(logging.DEBUG)
    app = create_test_app(
        plugins=[database_plugin(), Dependent()],
        config={
            "data_dir": str(tmp_path),
            "plugins": {"database": {"url": url, "connect_timeout": 5}},
        },
    )
    async with serve(app) as client:
        status = app.kernel.plugins.status("database")
        readyz = await client.get("/readyz")
        config = await client.get("/livez")  # the app itself keeps serving
    assert status.state is PluginState.FAILED
    assert status.failure is not None and status.failure.stage == "setup"
    assert status.failure.reason.startswith(
        f"Cannot reach database postgresql+asyncpg://nexus:***@127.0.0.1:{port}/app: "
    )
    assert app.kernel.plugins.status("dependent").state is PluginState.BLOCKED
    assert readyz.status_code == 503
    assert "Cannot reach database" in readyz.json()["plugins"]["database"]["detail"]
    assert config.status_code == 200
    for shown in (caplog.text, readyz.text, str(status.failure), status.failure.traceback):
        assert PASSWORD not in shown


class _Proxy:
    """A loopback TCP forwarder that can be cut, making the server behind it unreachable."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, upstream_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


async def test_health_turns_unhealthy_when_the_server_goes_away(
    postgres_server: Any, postgres_url: str, tmp_path: Path
) -> None:
    """/readyz reports the database healthy, then unhealthy with the reason once it is cut off."""
    proxy = _Proxy(postgres_server.port)
    port = await proxy.start()
    url = postgres_url.replace(f":{postgres_server.port}/", f":{port}/")
    app = create_test_app(
        plugins=[database_plugin()],
        config={"data_dir": str(tmp_path), "plugins": {"database": {"url": url}}},
    )
    async with serve(app) as client:
        before = await client.get("/readyz")
        await proxy.cut()
        after = await client.get("/readyz")
    assert before.status_code == 200
    assert before.json()["plugins"]["database"]["detail"] == "postgresql answers"
    assert after.status_code == 503
    database = after.json()["plugins"]["database"]
    assert database["healthy"] is False
    assert database["detail"].startswith(
        f"Cannot reach database postgresql+asyncpg://nexus@127.0.0.1:{port}/"
    )


async def test_in_memory_sqlite_keeps_its_data_across_sessions() -> None:
    """`sqlite+aiosqlite://` is one in-memory database shared by every session."""
    async with open_database("sqlite+aiosqlite://") as database:
        async with database.session() as session:
            await session.execute(text("CREATE TABLE items (name VARCHAR(20))"))
            await session.execute(text("INSERT INTO items VALUES ('kept')"))
        async with database.session() as session:
            names = (await session.execute(text("SELECT name FROM items"))).scalars().all()
    assert names == ["kept"]


async def test_ping_gives_up_on_a_server_that_does_not_answer() -> None:
    """A server that accepts connections but never answers fails ping after its timeout."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = DatabaseSettings(
        url=SecretStr(f"postgresql+asyncpg://nexus@127.0.0.1:{port}/app"), health_timeout=0.2
    )
    database = Database.from_settings(settings)
    try:
        with pytest.raises(nexus.plugins.database.DatabaseError) as caught:
            await database.ping(timeout=0.2)
    finally:
        await database.dispose()
        server.close()
        for writer in accepted:
            writer.transport.abort()
        await server.wait_closed()
    assert str(caught.value) == (
        f"Database postgresql+asyncpg://nexus@127.0.0.1:{port}/app did not answer within 0.2 s."
    )


async def test_production_without_a_url_warns_that_sqlite_is_in_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In production the SQLite default still starts, with a warning to configure a server."""
    config = load_config(
        None, environment="production", env={}, overrides={"data_dir": str(tmp_path)}
    )
    async with Kernel(config, plugins=[database_plugin()], entry_points=False) as kernel:
        assert kernel.plugins.status("database").state is PluginState.ACTIVE
    assert (
        f"plugins.database.url is not set: using SQLite at {tmp_path}/plugins/database/nexus.db"
        in caplog.text
    )

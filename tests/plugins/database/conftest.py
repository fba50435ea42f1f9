"""Databases for the database plugin's tests: a SQLite file, or a fresh PostgreSQL database."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import nexus.plugins.database
from nexus.kernel import PluginSource, inline_plugin, loader
from nexus.plugins.database import DatabasePlugin
from tests.conftest import PluginWriter

MANIFEST: dict[str, Any] = json.loads(
    (Path(nexus.plugins.database.__file__).parent / "manifest.json").read_text()
)

#: A directory plugin that applies its migrations/ in setup, as the contract asks.
MIGRATING_PLUGIN = """
from pathlib import Path

from nexus import Plugin
from nexus.plugins.database import DATABASE


class Main(Plugin):
    async def setup(self, ctx):
        database = ctx.services.get(DATABASE)
        await database.migrate(ctx.name, Path(__file__).parent / "migrations")
"""


def database_plugin() -> PluginSource:
    """The built-in database plugin as the kernel finds it, from its own manifest.json."""
    return inline_plugin(MANIFEST, DatabasePlugin)


def write_migrating_plugin(
    writer: PluginWriter, name: str, migrations: dict[str, str], **manifest: Any
) -> Path:
    """A directory plugin `name` whose migrations/ holds `migrations` (file name -> code)."""
    requires = {"database": ">=1.0", **manifest.pop("requires", {})}
    directory = writer.write(
        name,
        MIGRATING_PLUGIN,
        requires=requires,
        permissions=["services:use:database"],
        **manifest,
    )
    (directory / "migrations").mkdir(exist_ok=True)
    for file, code in migrations.items():
        (directory / "migrations" / file).write_text(code)
    return directory


def sql_migration(*statements: str) -> str:
    """The source of a migration that runs `statements` in order."""
    lines = "".join(f"    await conn.execute(text({s!r}))\n" for s in statements)
    return f"from sqlalchemy import text\n\n\nasync def upgrade(conn):\n{lines}"


@pytest.fixture(autouse=True)
def forget_plugin_modules() -> Iterator[None]:
    """Drop imported directory plugins after each test: the next test reuses their names."""
    yield
    for name in {m.split(".")[1] for m in list(sys.modules) if m.startswith(f"{loader.PACKAGE}.")}:
        loader.release_directory(name)


async def create_postgres_database(server: Any) -> str:
    """CREATE DATABASE a fresh one on the test server; returns its SQLAlchemy URL."""
    import asyncpg

    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(
        host="127.0.0.1", port=server.port, user=server.user, database="postgres"
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"postgresql+asyncpg://{server.user}@127.0.0.1:{server.port}/{name}"


async def drop_postgres_database(server: Any, url: str) -> None:
    """DROP a database made by create_postgres_database, closing its leftover connections."""
    import asyncpg

    admin = await asyncpg.connect(
        host="127.0.0.1", port=server.port, user=server.user, database="postgres"
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def postgres_url(postgres_server: Any) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database on the session's server."""
    url = await create_postgres_database(postgres_server)
    yield url
    await drop_postgres_database(postgres_server, url)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each supported kind: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    url = await create_postgres_database(server)
    yield url
    await drop_postgres_database(server, url)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> PluginWriter:
    """A plugin directory under tmp_path for directory plugins with migrations."""
    return PluginWriter(tmp_path / "plugins")

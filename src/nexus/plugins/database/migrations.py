"""Per-plugin migrations: `NNNN_<slug>.py` files applied in number order, each exactly once.

Every migration runs in its own transaction together with its row in `nexus_migrations`, under
a lock that serialises every process migrating the same database: a PostgreSQL transaction
advisory lock, or SQLite's write lock (BEGIN IMMEDIATE). After taking the lock the applied
versions are read again, so a migration another process applied meanwhile is skipped.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    text,
)
from sqlalchemy import (
    inspect as inspect_schema,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from nexus.plugins.database.engine import IMMEDIATE, describe_error
from nexus.plugins.database.errors import MigrationError
from nexus.plugins.database.settings import Dialect

Upgrade = Callable[[AsyncConnection], Awaitable[None]]

TABLE_NAME: Final = "nexus_migrations"
_FILE_NAME: Final = re.compile(r"\A(?P<version>\d{4})_(?P<slug>[a-z0-9][a-z0-9_]*)\.py\Z")
_EXAMPLE: Final = "e.g. 0001_create_notes.py"
#: The PostgreSQL advisory lock key: a stable signed 64-bit hash of the table name.
LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(TABLE_NAME.encode()).digest()[:8], "big", signed=True
)

_metadata = MetaData()
migrations_table: Final = Table(
    TABLE_NAME,
    _metadata,
    Column("plugin", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(255), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class MigrationFile:
    """One migration of a plugin: `0001_create_notes.py` is version 1."""

    version: int
    name: str
    path: Path


def find_migrations(plugin: str, directory: Path) -> list[MigrationFile]:
    """The plugin's migration files in number order.

    Files whose names start with `_` or `.` are ignored (helpers, `__init__.py`). Misnamed
    files, repeated numbers and gaps raise one MigrationError that lists every problem.
    """
    if not directory.is_dir():
        raise MigrationError(
            f"Plugin {plugin!r} has no migrations directory {str(directory)!r}.", plugin=plugin
        )
    problems: list[tuple[str, str]] = []  # (file name, what is wrong)
    by_version: dict[int, list[MigrationFile]] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(("_", ".")) or path.suffix != ".py" or not path.is_file():
            continue
        match = _FILE_NAME.match(path.name)
        if match is None:
            problems.append(
                (
                    path.name,
                    "is not named NNNN_<slug>.py (four digits, '_', then lowercase letters, "
                    f"digits and '_'), {_EXAMPLE}",
                )
            )
            continue
        version = int(match["version"])
        if version == 0:
            problems.append((path.name, f"numbers start at 0001, {_EXAMPLE}"))
            continue
        by_version.setdefault(version, []).append(MigrationFile(version, path.name, path))
    expected = 1
    for version in sorted(by_version):
        files = by_version[version]
        if len(files) > 1:
            names = " and ".join(f.name for f in files)
            problems.append((files[1].name, f"repeats number {version:04d} ({names}); renumber"))
        if version != expected:
            missing = (
                f"{expected:04d}"
                if version == expected + 1
                else f"{expected:04d}-{version - 1:04d}"
            )
            problems.append(
                (files[0].name, f"leaves a gap: {missing} missing; number migrations without gaps")
            )
        expected = version + 1
    if problems:
        listed = "\n".join(f"  - {name}: {message}" for name, message in problems)
        raise MigrationError(
            f"Plugin {plugin!r} has invalid migrations in {str(directory)!r}:\n{listed}",
            plugin=plugin,
            file=problems[0][0],
        )
    return [by_version[version][0] for version in sorted(by_version)]


def load_upgrade(plugin: str, migration: MigrationFile) -> Upgrade:
    """Import a migration file and return its `async def upgrade(conn)`."""
    module_name = f"nexus_migrations.{plugin}._{migration.path.stem}"
    module = types.ModuleType(module_name)
    module.__file__ = str(migration.path)
    # Compiled from source each time: no __pycache__ beside the migrations, nothing stale.
    sys.modules[module_name] = module  # for dataclasses and the like during execution
    try:
        code = compile(migration.path.read_bytes(), str(migration.path), "exec")
        exec(code, module.__dict__)
    except Exception as exc:  # a migration file may raise anything on import
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        raise MigrationError(
            f"Migration {migration.name} of plugin {plugin!r} cannot be imported: {reason}",
            plugin=plugin,
            file=migration.name,
        ) from exc
    finally:
        sys.modules.pop(module_name, None)
    upgrade = getattr(module, "upgrade", None)
    if not inspect.iscoroutinefunction(upgrade):
        raise MigrationError(
            f"Migration {migration.name} of plugin {plugin!r} must define "
            f"`async def upgrade(conn: AsyncConnection) -> None`.",
            plugin=plugin,
            file=migration.name,
        )
    return upgrade


def _table_exists(connection: Connection) -> bool:
    return inspect_schema(connection).has_table(TABLE_NAME)


class Migrator:
    """Applies and reports the migrations of plugins on one engine."""

    def __init__(
        self,
        engine: AsyncEngine,
        dialect: Dialect,
        *,
        lock_timeout: float,
        logger: logging.Logger,
    ) -> None:
        self._engine, self._dialect, self._logger = engine, dialect, logger
        self._lock_ms = max(1, round(lock_timeout * 1000))
        self._has_table = False

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction that holds the migration lock until it ends."""
        async with self._engine.connect() as conn:
            if self._dialect == "sqlite":
                await conn.execution_options(**{IMMEDIATE: self._lock_ms})
            async with conn.begin():
                if self._dialect == "postgresql":
                    await conn.exec_driver_sql(f"SET LOCAL lock_timeout = {self._lock_ms}")
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY}
                    )
                yield conn

    async def ensure_table(self) -> None:
        """Create `nexus_migrations` unless it exists (safe when processes race to do it)."""
        if self._has_table:
            return
        async with self._engine.connect() as conn:
            exists = await conn.run_sync(_table_exists)
        if not exists:
            async with self._locked() as conn:
                await conn.run_sync(_metadata.create_all)
        self._has_table = True

    async def current(self) -> dict[str, int]:
        """The highest applied migration version of every plugin that has any."""
        table = migrations_table
        async with self._engine.connect() as conn:
            if not await conn.run_sync(_table_exists):
                return {}
            rows = await conn.execute(
                select(table.c.plugin, func.max(table.c.version))
                .group_by(table.c.plugin)
                .order_by(table.c.plugin)
            )
            return {plugin: int(version) for plugin, version in rows}

    async def applied(self, plugin: str) -> dict[int, str]:
        """The plugin's applied migrations: version -> file name."""
        async with self._engine.connect() as conn:
            if not await conn.run_sync(_table_exists):
                return {}
            return await _applied(conn, plugin)

    async def pending(self, plugin: str, directory: Path) -> list[MigrationFile]:
        """The plugin's migrations in `directory` that are not applied yet."""
        done = await self.applied(plugin)
        return [m for m in find_migrations(plugin, directory) if m.version not in done]

    async def migrate(self, plugin: str, directory: Path) -> list[str]:
        """Apply the plugin's pending migrations in order; return the names applied here."""
        files = find_migrations(plugin, directory)
        await self.ensure_table()
        async with self._engine.connect() as conn:
            done = await _applied(conn, plugin)
        unknown = sorted(set(done) - {m.version for m in files})
        if unknown:
            self._logger.warning(
                "Plugin %s: the database has migration(s) %s, which %s does not contain "
                "(applied by a newer version of the plugin?)",
                plugin,
                ", ".join(done[v] for v in unknown),
                directory,
            )
        applied: list[str] = []
        try:
            for migration in [m for m in files if m.version not in done]:
                upgrade = load_upgrade(plugin, migration)
                if await self._apply(plugin, migration, upgrade):
                    applied.append(migration.name)
                    self._logger.info("Applied migration %s of plugin %s", migration.name, plugin)
        except MigrationError as exc:
            exc.applied = applied
            raise
        return applied

    async def _apply(self, plugin: str, migration: MigrationFile, upgrade: Upgrade) -> bool:
        try:
            async with self._locked() as conn:
                if migration.version in await _applied(conn, plugin):
                    return False  # another process applied it while this one waited
                await upgrade(conn)
                await conn.execute(
                    insert(migrations_table).values(
                        plugin=plugin,
                        version=migration.version,
                        name=migration.name,
                        applied_at=datetime.now(UTC),
                    )
                )
        except Exception as exc:  # migration code may raise anything
            raise MigrationError(
                f"Migration {migration.name} of plugin {plugin!r} failed: "
                f"{describe_error(exc)}. Nothing of it was kept; the migrations before it stay "
                f"applied. Fix {str(migration.path)!r} and start again.",
                plugin=plugin,
                file=migration.name,
            ) from exc
        return True


async def _applied(conn: AsyncConnection, plugin: str) -> dict[int, str]:
    table = migrations_table
    rows = await conn.execute(select(table.c.version, table.c.name).where(table.c.plugin == plugin))
    return {int(version): name for version, name in rows}

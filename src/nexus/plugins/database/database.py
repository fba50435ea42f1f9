"""Database: the service other plugins use for sessions, raw connections and migrations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nexus.kernel.services import ServiceKey
from nexus.plugins.database.engine import create_engine, describe_error
from nexus.plugins.database.errors import DatabaseError
from nexus.plugins.database.migrations import Migrator
from nexus.plugins.database.settings import (
    DatabaseSettings,
    Dialect,
    database_url,
    dialect_of,
    display_url,
)

_logger = logging.getLogger("nexus.plugins.database")


class Database:
    """The application's SQL database: an async engine, sessions and per-plugin migrations.

    Build one with `Database.from_settings`; the database plugin provides it as `DATABASE`.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        migration_lock_timeout: float = 300.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self.engine: Final = engine
        self.dialect: Final[Dialect] = dialect_of(engine.url)
        self.url: Final = display_url(engine.url)  # password masked, safe to show
        self._logger = logger or _logger
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._migrator = Migrator(
            engine, self.dialect, lock_timeout=migration_lock_timeout, logger=self._logger
        )

    @classmethod
    def from_settings(
        cls,
        settings: DatabaseSettings,
        *,
        data_dir: Path | None = None,
        logger: logging.Logger | None = None,
    ) -> Database:
        """Connect as `plugins.database` says; `data_dir` holds the default SQLite file.

        Nothing is connected yet: the first session, `ping` or migration opens a connection.
        """
        engine = create_engine(database_url(settings, data_dir), settings)
        return cls(engine, migration_lock_timeout=settings.migration_lock_timeout, logger=logger)

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """An AsyncSession that commits when the block ends and rolls back if it raises."""
        async with self._sessions() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    async def migrate(self, plugin: str, directory: Path) -> list[str]:
        """Apply `plugin`'s pending migrations from `directory`; return the file names applied.

        Files are `NNNN_<slug>.py` with `async def upgrade(conn: AsyncConnection) -> None`,
        applied in number order, each once, even when several processes start together. A
        failure raises MigrationError naming the plugin and file; earlier ones stay applied.
        """
        return await self._migrator.migrate(plugin, directory)

    async def pending(self, plugin: str, directory: Path) -> list[str]:
        """The file names of `plugin`'s migrations in `directory` that are not applied yet."""
        return [m.name for m in await self._migrator.pending(plugin, directory)]

    async def current(self) -> dict[str, int]:
        """The highest applied migration version of each plugin, by plugin name."""
        return await self._migrator.current()

    async def initialize(self) -> None:
        """Create the `nexus_migrations` table unless it exists."""
        await self._migrator.ensure_table()

    async def ping(self, *, timeout: float | None = None) -> None:
        """Run `SELECT 1`; raise DatabaseError saying why the database did not answer."""
        try:
            async with asyncio.timeout(timeout):
                async with self.engine.connect() as conn:
                    await conn.exec_driver_sql("SELECT 1")
        except TimeoutError:
            limit = "in time" if timeout is None else f"within {timeout:g} s"
            raise DatabaseError(f"Database {self.url} did not answer {limit}.") from None
        except Exception as exc:  # noqa: BLE001 - drivers raise OSError, their own errors, ...
            raise DatabaseError(
                f"Cannot reach database {self.url}: {describe_error(exc)}"
            ) from None

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


DATABASE: Final = ServiceKey[Database]("database", Database)

"""The database plugin: connects on setup, provides DATABASE, checks the server's health."""

from __future__ import annotations

from pathlib import Path

from nexus import Plugin, PluginContext
from nexus.kernel.plugin import Health
from nexus.plugins.database.database import DATABASE, Database
from nexus.plugins.database.errors import DatabaseError
from nexus.plugins.database.settings import SQLITE_FILE, DatabaseSettings


class DatabasePlugin(Plugin):
    """SQLite or PostgreSQL for every plugin: sessions, `DbSession` and migrations."""

    Config = DatabaseSettings

    def __init__(self) -> None:
        self._database: Database | None = None
        self._health_timeout = DatabaseSettings().health_timeout

    async def setup(self, ctx: PluginContext[DatabaseSettings]) -> None:
        settings = ctx.config
        data_dir: Path | None = None
        if settings.url is None:
            data_dir = ctx.data_dir  # only touched (and created) when the SQLite file lives there
            if ctx.is_production:
                ctx.logger.warning(
                    "plugins.database.url is not set: using SQLite at %s. Set a PostgreSQL URL "
                    "to run more than one instance.",
                    data_dir / SQLITE_FILE,
                )
        database = Database.from_settings(settings, data_dir=data_dir, logger=ctx.logger)
        ctx.on_cleanup(database.dispose)
        await database.ping(timeout=settings.connect_timeout)
        await database.initialize()
        ctx.services.provide(DATABASE, database)
        self._database, self._health_timeout = database, settings.health_timeout
        ctx.logger.info("Using database %s", database.url)

    async def teardown(self, ctx: PluginContext[DatabaseSettings]) -> None:
        """Forget the database; its connections are closed right after (a cleanup)."""
        self._database = None

    async def health(self) -> Health:
        """Healthy when the database answers `SELECT 1` within `health_timeout`."""
        database = self._database
        if database is None:
            return Health.unhealthy("not connected")
        try:
            await database.ping(timeout=self._health_timeout)
        except DatabaseError as exc:
            return Health.unhealthy(str(exc))
        return Health.healthy(f"{database.dialect} answers", pool=database.engine.pool.status())

"""The database built-in plugin: SQLite or PostgreSQL through SQLAlchemy's asyncio API.

Other plugins require it (`"requires": {"database": ">=1.0"}`, permission
`services:use:database`), migrate their tables in setup and use sessions in routes:

    await ctx.services.get(DATABASE).migrate(ctx.name, Path(__file__).parent / "migrations")

    @router.post("/notes")
    async def create(note: NoteIn, session: DbSession) -> dict[str, int]: ...
"""

from __future__ import annotations

from nexus.plugins.database import _extra  # noqa: F401 - names the extra if SQLAlchemy is missing
from nexus.plugins.database.database import DATABASE, Database
from nexus.plugins.database.dependencies import DbSession
from nexus.plugins.database.errors import DatabaseError, DatabaseURLError, MigrationError
from nexus.plugins.database.plugin import DatabasePlugin
from nexus.plugins.database.settings import DatabaseSettings

__all__ = [
    "DATABASE",
    "Database",
    "DatabaseError",
    "DatabasePlugin",
    "DatabaseSettings",
    "DatabaseURLError",
    "DbSession",
    "MigrationError",
]

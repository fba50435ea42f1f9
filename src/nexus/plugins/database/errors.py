"""Errors of the database plugin: each names the database, plugin or file concerned."""

from __future__ import annotations

from nexus.errors import NexusError


class DatabaseError(NexusError, RuntimeError):
    """The database could not be reached or did not do what was asked."""


class DatabaseURLError(NexusError, ValueError):
    """`plugins.database.url` is not a database URL this plugin supports."""


class MigrationError(DatabaseError):
    """A plugin's migrations are misnamed, or one of them failed.

    `plugin` is the plugin whose migrations were run; `file` the offending file's name, when
    one file is to blame; `applied` the files of that plugin applied before the failure.
    """

    def __init__(self, message: str, *, plugin: str, file: str | None = None) -> None:
        self.plugin, self.file = plugin, file
        self.applied: list[str] = []
        super().__init__(message)

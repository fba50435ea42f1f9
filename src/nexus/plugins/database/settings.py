"""The database plugin's settings (`plugins.database` in nexus.yaml) and the URL they give."""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from nexus.plugins.database.errors import DatabaseURLError

Dialect = Literal["sqlite", "postgresql"]

#: The SQLite file used when no URL is configured, inside the plugin's data directory.
SQLITE_FILE: Final = "nexus.db"

_DRIVERS: Final[dict[str, str]] = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_SUPPORTED: Final = (
    "sqlite+aiosqlite:///path/to/nexus.db (SQLite) or "
    "postgresql+asyncpg://user:password@host:5432/name (PostgreSQL)"
)


class DatabaseSettings(BaseModel):
    """`plugins.database`: where the database is and how connections are pooled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: SQLAlchemy URL; None means the SQLite file `<data_dir>/plugins/database/nexus.db`.
    url: SecretStr | None = None
    pool_size: int = Field(5, ge=1, description="Connections kept open in the pool.")
    max_overflow: int = Field(10, ge=0, description="Extra connections allowed under load.")
    pool_timeout: float = Field(30.0, gt=0, description="Seconds to wait for a free connection.")
    pool_recycle: int | None = Field(
        1800, ge=1, description="Replace connections older than this many seconds (None: never)."
    )
    echo: bool = Field(False, description="Log every SQL statement (development only).")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a connection.")
    busy_timeout: float = Field(
        5.0, ge=0, description="SQLite: seconds a statement waits for another writer to finish."
    )
    migration_lock_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait while another process applies migrations."
    )
    health_timeout: float = Field(1.5, gt=0, description="Seconds the health check waits.")


def database_url(settings: DatabaseSettings, data_dir: Path | None) -> URL:
    """The async SQLAlchemy URL to connect to; `data_dir` holds the default SQLite file.

    `sqlite://` and `postgresql://` (or `postgres://`) select the async drivers aiosqlite and
    asyncpg. Any other scheme raises DatabaseURLError naming the supported ones.
    """
    if settings.url is None:
        if data_dir is None:
            raise DatabaseURLError(
                "plugins.database.url is not set, and there is no data directory for the "
                f"default SQLite file. Set it to {_SUPPORTED}."
            )
        return URL.create("sqlite+aiosqlite", database=str(data_dir / SQLITE_FILE))
    try:
        url = make_url(settings.url.get_secret_value())
    except (ArgumentError, ValueError):
        # The text may hold a password, so it is not repeated here.
        raise DatabaseURLError(
            f"plugins.database.url is not a database URL. Use {_SUPPORTED}."
        ) from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise DatabaseURLError(
            f"plugins.database.url uses {url.drivername!r}, which is not supported. "
            f"Use {_SUPPORTED}."
        )
    return url.set(drivername=driver)


def dialect_of(url: URL) -> Dialect:
    """The backend of `url`: sqlite or postgresql (DatabaseURLError for any other)."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return "sqlite"
    if backend == "postgresql":
        return "postgresql"
    raise DatabaseURLError(f"{backend!r} databases are not supported. Use {_SUPPORTED}.")


def display_url(url: URL) -> str:
    """The URL as it may appear in logs and messages: the password is masked."""
    return url.render_as_string(hide_password=True)

"""Building the SQLAlchemy async engine for SQLite or PostgreSQL, and naming its errors."""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from nexus.plugins.database.errors import DatabaseError
from nexus.plugins.database.settings import DatabaseSettings, dialect_of, display_url

#: Execution option: on SQLite, begin with BEGIN IMMEDIATE (take the write lock at once),
#: waiting up to this many milliseconds for another connection's write to finish.
IMMEDIATE: Final = "nexus_begin_immediate"


def create_engine(url: URL, settings: DatabaseSettings) -> AsyncEngine:
    """An async engine for `url` (from `database_url`), pooled and tuned as `settings` say."""
    options: dict[str, Any] = {"echo": settings.echo}
    dialect = dialect_of(url)
    is_memory = dialect == "sqlite" and url.database in (None, "", ":memory:")
    if not is_memory:
        # An in-memory SQLite database lives in one connection (SQLAlchemy's StaticPool).
        options |= {
            "pool_size": settings.pool_size,
            "max_overflow": settings.max_overflow,
            "pool_timeout": settings.pool_timeout,
            "pool_recycle": settings.pool_recycle if settings.pool_recycle is not None else -1,
            # A server may drop idle connections or restart; a SQLite file never goes away.
            "pool_pre_ping": dialect == "postgresql",
        }
    if dialect == "sqlite":
        options["connect_args"] = {"timeout": settings.busy_timeout}
    else:
        options["connect_args"] = {
            "timeout": settings.connect_timeout,
            "server_settings": {"application_name": "nexus"},
        }
    try:
        engine = create_async_engine(url, **options)
    except ImportError as exc:
        raise DatabaseError(
            f"Cannot use {display_url(url)}: its driver is not installed ({exc}). "
            f"Install it with: pip install 'nexus-platform[database]'"
        ) from None
    if dialect == "sqlite":
        _tune_sqlite(engine, settings, wal=not is_memory)
    return engine


def _tune_sqlite(engine: AsyncEngine, settings: DatabaseSettings, *, wal: bool) -> None:
    busy_ms = round(settings.busy_timeout * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 driver, which would skip it before DDL and SELECT;
        # `begin` below emits it, so migrations and their bookkeeping row commit together.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            if wal:
                # Readers no longer block the writer, and the other way round.
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "reset")
    def reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        # A COMMIT that SQLite refuses (a deferred foreign key) leaves the transaction open,
        # while SQLAlchemy counts it as ended and skips its rollback on return to the pool:
        # end it here, or the connection's next BEGIN fails.
        driver = record.driver_connection if record is not None else None
        if state.asyncio_safe and driver is not None and driver.in_transaction:
            dbapi_connection.rollback()

    @event.listens_for(engine.sync_engine, "begin")
    def begin(connection: Connection) -> None:
        wait_ms = connection.get_execution_options().get(IMMEDIATE)
        if wait_ms is None:
            # Take the write lock up front: a deferred transaction that reads, then writes
            # after another connection committed fails at once with "database is locked"
            # (busy_timeout cannot help a stale snapshot). Writers queue instead; WAL readers
            # of other connections are not blocked.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(wait_ms)}")
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms}")


def describe_error(exc: BaseException) -> str:
    """A one-line account of a database error, without the SQLAlchemy boilerplate."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
        name = type(exc.orig).__name__
    elif isinstance(exc, SQLAlchemyError):
        text, name = exc.args[0] if exc.args else str(exc), type(exc).__name__
    else:
        text, name = str(exc), type(exc).__name__
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    if isinstance(exc, TimeoutError) and not lines:
        return "TimeoutError: no answer in time"
    return f"{name}: {lines[0]}" if lines else name

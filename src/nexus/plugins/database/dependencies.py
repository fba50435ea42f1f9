"""FastAPI dependencies: a database session for route handlers of any plugin."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import ServiceNotFoundError
from nexus.http.problems import ServiceUnavailableError
from nexus.kernel.context import PluginContext
from nexus.plugins.database.database import DATABASE

logger = logging.getLogger("nexus.plugins.database")


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    # The route's own plugin asks, so its manifest must grant services:use:database.
    ctx: PluginContext[Any] = request.app.state.nexus_context
    try:
        database = ctx.services.get(DATABASE)
    except ServiceNotFoundError:
        raise ServiceUnavailableError("The database is not available.", retry_after=5) from None
    try:
        async with database.session() as session:
            yield session
    except Exception as exc:
        if not _is_unreachable(exc):
            raise
        # A lost database is the server's condition, not a bug: 503 with a retry hint, and one
        # warning line rather than a 500 with a traceback per request.
        logger.warning("Database unreachable in %s: %s", ctx.name, _describe(exc))
        raise ServiceUnavailableError(
            "The database is not reachable right now; try again shortly.", retry_after=5
        ) from None


def _is_unreachable(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    if isinstance(exc, OSError | PoolTimeoutError | OperationalError):
        return True
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc.orig, OSError)
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


# Commit before the response is sent, so a failed commit is a 500 rather than a false 200.
# FastAPI before 0.121 has no `scope`; there the session still ends with the request.
_depends_options: dict[str, Any] = (
    {"scope": "function"} if "scope" in inspect.signature(Depends).parameters else {}
)

#: `session: DbSession` in a route handler: committed after the handler returns, rolled back
#: if it raises (an HTTPException included).
DbSession = Annotated[AsyncSession, Depends(_session, **_depends_options)]

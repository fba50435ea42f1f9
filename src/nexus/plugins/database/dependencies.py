"""FastAPI dependencies: a database session for route handlers of any plugin."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import ServiceNotFoundError
from nexus.http.problems import ServiceUnavailableError
from nexus.kernel.context import PluginContext
from nexus.plugins.database.database import DATABASE


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    # The route's own plugin asks, so its manifest must grant services:use:database.
    ctx: PluginContext[Any] = request.app.state.nexus_context
    try:
        database = ctx.services.get(DATABASE)
    except ServiceNotFoundError:
        raise ServiceUnavailableError("The database is not available.", retry_after=5) from None
    async with database.session() as session:
        yield session


# Commit before the response is sent, so a failed commit is a 500 rather than a false 200.
# FastAPI before 0.121 has no `scope`; there the session still ends with the request.
_depends_options: dict[str, Any] = (
    {"scope": "function"} if "scope" in inspect.signature(Depends).parameters else {}
)

#: `session: DbSession` in a route handler: committed after the handler returns, rolled back
#: if it raises (an HTTPException included).
DbSession = Annotated[AsyncSession, Depends(_session, **_depends_options)]

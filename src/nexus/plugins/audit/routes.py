"""`GET /api/audit/entries`: the audit log for people holding `audit:read`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from nexus.http.problems import ServiceUnavailableError
from nexus.plugins.audit.entries import Outcome
from nexus.plugins.audit.log import AuditLog
from nexus.plugins.audit.store import MAX_LIMIT

#: The permission needed to read the audit log (the admin role holds it).
READ_PERMISSION = "audit:read"


def _read_permission() -> Any:
    try:
        from nexus.plugins.auth import require
    except ImportError:

        async def unavailable(request: Request) -> None:
            raise ServiceUnavailableError(
                "Reading the audit log needs the auth plugin to check who asks, and it is not "
                "installed: pip install 'nexus-platform[auth]'."
            )

        return unavailable
    return require(READ_PERMISSION)


def build_router(log: AuditLog) -> APIRouter:
    """The routes, reading through `log`."""
    router = APIRouter()

    @router.get(
        "/entries",
        summary="Audit entries, newest first",
        dependencies=[Depends(_read_permission())],
    )
    async def entries(
        actor: str | None = None,
        action: Annotated[
            str | None, Query(description="Prefix: 'auth.login' also finds auth.login.failed.")
        ] = None,
        outcome: Outcome | None = None,
        since: Annotated[dt.datetime | None, Query(description="Inclusive; UTC if naive.")] = None,
        until: Annotated[dt.datetime | None, Query(description="Exclusive; UTC if naive.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        before_id: Annotated[
            int | None,
            # Bounded by the largest BIGINT: a bigger id overflowed the database driver (500).
            Query(ge=1, le=2**63 - 1, description="The next page: entries older than this id."),
        ] = None,
    ) -> dict[str, Any]:
        found = await log.query(
            actor=actor,
            action=action,
            outcome=outcome,
            since=since,
            until=until,
            limit=limit,
            before_id=before_id,
        )
        return {
            "entries": [entry.as_dict() for entry in found],
            "next_before_id": found[-1].id if len(found) == limit else None,
        }

    return router

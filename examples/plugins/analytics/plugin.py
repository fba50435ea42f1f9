"""analytics: counts sign-ups per day from `user.created` and `user.verified` events.

The counts live in the database, so they survive restarts and are shared by every instance.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from nexus import Event, Plugin, PluginContext
from nexus.plugins.database import DATABASE, Database, DbSession

from .store import Signups, Step, summarise, track

MIGRATIONS = Path(__file__).parent / "migrations"
#: The step each subscribed topic counts.
STEPS: dict[str, Step] = {"user.created": "created", "user.verified": "verified"}


class Settings(BaseModel):
    """`plugins.analytics` in nexus.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_days: int = Field(30, ge=1, le=366, description="Days GET /signups covers by default.")


class UserEvent(BaseModel):
    """The part of a user event this plugin reads."""

    id: str


class Analytics(Plugin):
    """Serves /api/analytics/signups from the user events it has counted."""

    Config = Settings

    async def setup(self, ctx: PluginContext[Settings]) -> None:
        """Migrate the table, subscribe to user events and serve the counts."""
        self.ctx = ctx
        self.database: Database = ctx.services.get(DATABASE)
        await self.database.migrate(ctx.name, MIGRATIONS)
        for topic in STEPS:
            ctx.events.subscribe(topic, self.on_user_event)
        ctx.http.include_router(build_router(ctx))

    async def on_user_event(self, event: Event) -> None:
        """Count the user for the event's step on the day it happened (UTC)."""
        step = STEPS[event.type]
        user_id = UserEvent.model_validate(event.data).id
        day = event.datetime.date()
        async with self.database.session() as session:
            is_new = await track(session, step=step, user_id=user_id, day=day)
        if is_new:
            await self.ctx.events.publish(
                "analytics.tracked", {"step": step, "user_id": user_id, "day": day.isoformat()}
            )


def build_router(ctx: PluginContext[Settings]) -> APIRouter:
    """GET /signups."""
    router = APIRouter()

    @router.get("/signups", summary="Sign-up counts, in total and per day")
    async def signups(
        session: DbSession,
        days: Annotated[
            int | None, Query(ge=1, le=366, description="How many recent days to list (UTC).")
        ] = None,
    ) -> Signups:
        """All-time counts of created and verified users, and the counts of each recent day."""
        today = dt.datetime.now(dt.UTC).date()
        since = today - dt.timedelta(days=(days or ctx.config.default_days) - 1)
        return await summarise(session, since=since)

    return router

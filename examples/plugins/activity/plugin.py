"""Activity: listens to note events and serves the latest ones."""

from __future__ import annotations

from collections import deque
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from nexus import Event, Plugin, PluginContext


class Settings(BaseModel):
    keep_last: int = Field(default=50, ge=1, le=10_000)


class Activity(Plugin):
    Config = Settings

    async def setup(self, ctx: PluginContext[Settings]) -> None:
        self.feed: deque[dict[str, Any]] = deque(maxlen=ctx.config.keep_last)
        ctx.events.subscribe("note.*", self.on_note)
        router = APIRouter()

        @router.get("/feed")
        async def feed() -> list[dict[str, Any]]:
            return list(reversed(self.feed))

        ctx.http.include_router(router)

    async def on_note(self, event: Event) -> None:
        self.feed.append(
            {"type": event.type, "data": event.data, "request_id": event.correlation_id}
        )

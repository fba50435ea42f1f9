"""Notes: a small CRUD API that publishes an event for every change."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from nexus import Plugin, PluginContext, ServiceKey


class Settings(BaseModel):
    max_notes: int = Field(default=1000, ge=1)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=500)


class NoteStore:
    """Notes kept in memory; other plugins may read them through the `notes.store` service."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.notes: dict[int, str] = {}
        self._ids = itertools.count(1)

    def add(self, text: str) -> int:
        if len(self.notes) >= self.limit:
            raise HTTPException(409, f"At most {self.limit} notes (plugins.notes.max_notes).")
        note_id = next(self._ids)
        self.notes[note_id] = text
        return note_id


NOTES = ServiceKey[NoteStore]("notes.store", NoteStore)


class Notes(Plugin):
    Config = Settings

    async def setup(self, ctx: PluginContext[Settings]) -> None:
        store = NoteStore(ctx.config.max_notes)
        ctx.services.provide(NOTES, store)
        router = APIRouter()

        @router.get("/notes")
        async def list_notes() -> list[dict[str, Any]]:
            return [{"id": i, "text": t} for i, t in store.notes.items()]

        @router.post("/notes", status_code=201)
        async def create_note(note: NoteIn) -> dict[str, Any]:
            note_id = store.add(note.text)
            await ctx.events.publish("note.created", {"id": note_id, "text": note.text})
            return {"id": note_id, "text": note.text}

        @router.delete("/notes/{note_id}", status_code=204)
        async def delete_note(note_id: int) -> None:
            if store.notes.pop(note_id, None) is None:
                raise HTTPException(404, f"No note {note_id}.")
            await ctx.events.publish("note.deleted", {"id": note_id})

        ctx.http.include_router(router)

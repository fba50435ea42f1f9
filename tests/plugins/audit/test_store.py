"""The audit table on SQLite and PostgreSQL: idempotent inserts, filters, pruning."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import nexus.plugins.audit
from nexus import Event
from nexus.plugins.audit.entries import make_row, row_from_event
from nexus.plugins.audit.store import AuditStore
from nexus.plugins.database import Database, DatabaseSettings

MIGRATIONS = Path(nexus.plugins.audit.__file__).parent / "migrations"


async def _admin(server: Any, statement: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(
        host="127.0.0.1", port=server.port, user=server.user, database="postgres"
    )
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuditStore]:
    """An AuditStore on a migrated, empty database of each supported kind."""
    server, name = None, f"audit_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        await _admin(server, f'CREATE DATABASE "{name}"')
        url = f"postgresql+asyncpg://{server.user}@127.0.0.1:{server.port}/{name}"
    database = Database.from_settings(DatabaseSettings.model_validate({"url": url}))
    await database.initialize()
    assert await database.migrate("audit", MIGRATIONS) == ["0001_create_audit_entries.py"]
    try:
        yield AuditStore(database)
    finally:
        await database.dispose()
        if server is not None:
            await _admin(server, f'DROP DATABASE "{name}"')


def event(topic: str, data: Any, correlation_id: str | None = "req-1") -> Event:
    return Event(
        id=uuid.uuid4().hex,
        type=topic,
        source="auth",
        time=dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp(),
        data=data,
        correlation_id=correlation_id,
    )


async def test_an_event_delivered_twice_is_recorded_once(store: AuditStore) -> None:
    """Redelivery (after a lost acknowledgement) does not duplicate the entry."""
    failed = event("auth.login.failed", {"actor": "ada", "outcome": "failure", "ip": {"a", "b"}})
    await store.insert([row_from_event(failed)])
    await store.insert([row_from_event(failed), row_from_event(event("auth.x", None))])
    entries = await store.query(action="auth.login")

    assert len(entries) == 1
    entry = entries[0]
    assert (entry.actor, entry.outcome, entry.request_id) == ("ada", "failure", "req-1")
    assert entry.time == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert entry.details == {"ip": ["a", "b"]}


async def test_filters_combine_and_prefixes_are_literal(store: AuditStore) -> None:
    """actor, outcome, time range and action prefix filter together; % and _ match themselves."""
    base = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    def row(action: str, actor: str, hours: int, outcome: Any = "success") -> dict[str, Any]:
        return make_row(
            time=base + dt.timedelta(hours=hours),
            actor=actor,
            action=action,
            resource="r" * 600,
            outcome=outcome,
            request_id=None,
            source="test",
            details={},
        )

    await store.insert(
        [
            row("a%b.one", "ada", 0),
            row("axb.two", "ada", 1),
            row("a%b.three", "bob", 2, "denied"),
            row("a%b.four", "ada", 3, "failure"),
        ]
    )

    async def actions(**filters: Any) -> list[str]:
        return [e.action for e in await store.query(**filters)]

    assert await actions(action="a%b") == ["a%b.four", "a%b.three", "a%b.one"]
    assert await actions(action="a%b", actor="ada") == ["a%b.four", "a%b.one"]
    assert await actions(outcome="denied") == ["a%b.three"]
    assert await actions(
        since=base + dt.timedelta(hours=1), until=base + dt.timedelta(hours=3)
    ) == [
        "a%b.three",
        "axb.two",
    ]
    newest = (await store.query(limit=1))[0]
    assert await actions(before_id=newest.id, limit=2) == ["a%b.three", "axb.two"]
    assert len(newest.resource) == 512  # cut to the column, not refused

    assert await store.prune(base + dt.timedelta(hours=2)) == 2
    assert await actions() == ["a%b.four", "a%b.three"]

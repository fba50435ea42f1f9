"""The analytics_signups table: one row per user and step, counted per day."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final, Literal, cast

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

Step = Literal["created", "verified"]

_metadata = sa.MetaData()
#: The table as migrations/0001_create_signups.py creates it.
signups: Final = sa.Table(
    "analytics_signups",
    _metadata,
    sa.Column("step", sa.String(16), primary_key=True),
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.Date(), nullable=False),
)


class Counts(BaseModel):
    """How many users signed up, and how many of them verified their email address."""

    created: int = 0
    verified: int = 0


class DayCounts(BaseModel):
    """The counts of one day (UTC)."""

    day: dt.date
    created: int = 0
    verified: int = 0


class Signups(BaseModel):
    """All-time counts, and the counts of each recent day that had any."""

    total: Counts
    days: list[DayCounts]


async def track(session: AsyncSession, *, step: Step, user_id: str, day: dt.date) -> bool:
    """Count `user_id` for `step` on `day`; False if it was counted before (a redelivery)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(signups).values(step=step, user_id=user_id, day=day)
    result = await session.execute(statement.on_conflict_do_nothing())
    return cast(CursorResult[Any], result).rowcount == 1


async def summarise(session: AsyncSession, *, since: dt.date) -> Signups:
    """All-time counts, and per-day counts from `since` on, newest day first."""
    total = Counts()
    for step, count in await session.execute(
        sa.select(signups.c.step, sa.func.count()).group_by(signups.c.step)
    ):
        setattr(total, step, count)
    days: dict[dt.date, DayCounts] = {}
    recent = (
        sa.select(signups.c.day, signups.c.step, sa.func.count())
        .where(signups.c.day >= since)
        .group_by(signups.c.day, signups.c.step)
        .order_by(signups.c.day.desc())
    )
    for day, step, count in await session.execute(recent):
        setattr(days.setdefault(day, DayCounts(day=day)), step, count)
    return Signups(total=total, days=list(days.values()))

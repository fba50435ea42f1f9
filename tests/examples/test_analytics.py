"""The example analytics plugin: sign-ups counted per day from user events."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from nexus.plugins.database import DATABASE
from nexus.testing import EventRecorder, serve
from tests.examples.conftest import AppMaker

SIGNUPS = "/api/analytics/signups"


async def test_signups_count_created_and_verified_users_per_day(make_app: AppMaker) -> None:
    """Two registrations and one verification show as totals and as today's counts."""
    app = make_app()
    recorder = EventRecorder(app, "user.created", "analytics.tracked")
    async with serve(app) as client:
        assert (await client.get(SIGNUPS)).json() == {
            "total": {"created": 0, "verified": 0},
            "days": [],
        }
        for email in ("ada@example.com", "grace@example.com"):
            await client.post("/api/user_manager/users", json={"email": email, "name": "A"})
        created = await recorder.wait_for("user.created", 2)
        token = created[0].data["verification_token"]
        await client.get("/api/user_manager/verify", params={"token": token})
        tracked = await recorder.wait_for("analytics.tracked", 3)
        today = dt.datetime.now(dt.UTC).date().isoformat()
        assert sorted((e.data["step"], e.data["day"]) for e in tracked) == [
            ("created", today),
            ("created", today),
            ("verified", today),
        ]
        assert (await client.get(SIGNUPS)).json() == {
            "total": {"created": 2, "verified": 1},
            "days": [{"day": today, "created": 2, "verified": 1}],
        }


async def test_an_event_delivered_twice_is_counted_once(make_app: AppMaker) -> None:
    """A redelivered user.created (same user id) does not count the user again."""
    app = make_app()
    recorder = EventRecorder(app, "analytics.tracked", "test.done")
    async with serve(app) as client:
        for _ in range(2):
            report = await app.kernel.bus.publish_and_wait(
                "user.created", {"id": "u1", "email": "a@example.com", "name": "A"}, source="test"
            )
            assert report.failed == 0
        assert (await client.get(SIGNUPS)).json()["total"] == {"created": 1, "verified": 0}
        # The recorder gets events in publish order: once it has test.done, it has the rest.
        await app.kernel.bus.publish("test.done", None, source="test")
        await recorder.wait_for("test.done")
        assert len(recorder.matching("analytics.tracked")) == 1


async def test_days_lists_only_the_recent_days(make_app: AppMaker) -> None:
    """Older days count in the totals; `days` (default `default_days`) picks the days listed."""
    app = make_app(analytics={"default_days": 7})
    today = dt.datetime.now(dt.UTC).date()
    async with serve(app) as client:
        await app.kernel.bus.publish_and_wait("user.created", {"id": "new"}, source="test")
        async with app.kernel.services.get(DATABASE).engine.begin() as conn:
            await conn.execute(
                sa.text("INSERT INTO analytics_signups (step, user_id, day) VALUES (:s, :u, :d)"),
                [
                    {"s": "created", "u": "old", "d": today - dt.timedelta(days=7)},
                    {"s": "verified", "u": "old", "d": today - dt.timedelta(days=6)},
                ],
            )
        week = (await client.get(SIGNUPS)).json()
        assert week == {
            "total": {"created": 2, "verified": 1},
            "days": [
                {"day": today.isoformat(), "created": 1, "verified": 0},
                {"day": (today - dt.timedelta(days=6)).isoformat(), "created": 0, "verified": 1},
            ],
        }
        longer = (await client.get(SIGNUPS, params={"days": 8})).json()
        assert longer["days"][-1] == {
            "day": (today - dt.timedelta(days=7)).isoformat(),
            "created": 1,
            "verified": 0,
        }
        assert (await client.get(SIGNUPS, params={"days": 0})).status_code == 422

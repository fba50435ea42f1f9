"""JobRunner: each due time runs once across instances, jobs never overlap, misses are skipped."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from nexus.plugins.scheduler import (
    CronError,
    JobExistsError,
    JobRunner,
    LocalRunLock,
    RedisRunLock,
    RunLock,
    SchedulerClosedError,
    current_run,
)
from nexus.testing import FakeClock
from nexus.testing.clock import DEFAULT_START
from nexus.testing.servers import RedisServer, start_redis

MINUTE = dt.timedelta(minutes=1)


def minutes(*numbers: int) -> list[dt.datetime]:
    """Due times that many minutes after the fake clock's start."""
    return [DEFAULT_START + n * MINUTE for n in numbers]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
async def make_runner(clock: FakeClock) -> AsyncIterator[Callable[..., JobRunner]]:
    """Build runners on the fake clock; closes them at the end."""
    made: list[JobRunner] = []

    def make(lock: RunLock | None = None, instance_id: str = "solo") -> JobRunner:
        runner = JobRunner(
            lock or LocalRunLock(), instance_id=instance_id, clock=clock.time, sleep=clock.sleep
        )
        made.append(runner)
        return runner

    yield make
    for runner in made:
        await runner.close()


class Recorder:
    """A job that records which instance ran which due time."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, dt.datetime]] = []

    async def __call__(self) -> None:
        run = current_run()
        assert run is not None
        self.runs.append((run.instance_id, run.due))

    @property
    def dues(self) -> list[dt.datetime]:
        return [due for _, due in self.runs]


async def tick(clock: FakeClock, sleepers: int, times: int = 1) -> None:
    """Advance a minute `times` times, each once every job is asleep again."""
    for _ in range(times):
        await clock.wait_for_sleepers(sleepers)
        clock.advance(MINUTE)
    await clock.wait_for_sleepers(sleepers)


async def test_each_due_time_runs_once_across_instances(
    redis_server: RedisServer, prefix: str, clock: FakeClock, make_runner: Callable[..., JobRunner]
) -> None:
    """Two instances sharing Redis run each due time exactly once between them."""
    job = Recorder()
    locks = [RedisRunLock(redis_server.url, instance_id=i, prefix=prefix) for i in ("a", "b")]
    for lock in locks:
        make_runner(lock, lock.instance_id).scheduler("reports").every(60, job, name="sync")
    await tick(clock, sleepers=2, times=8)
    assert job.dues == minutes(1, 2, 3, 4, 5, 6, 7, 8)
    for instance, due in job.runs:
        due_ms = int(due.timestamp() * 1000)
        assert await locks[0].holder("reports", "sync", due_ms) == instance


async def test_a_stopped_instance_leaves_the_runs_to_the_others(
    redis_server: RedisServer, prefix: str, clock: FakeClock, make_runner: Callable[..., JobRunner]
) -> None:
    """Once one instance stops, the other runs every later due time itself."""
    job = Recorder()
    first, second = (
        make_runner(RedisRunLock(redis_server.url, instance_id=i, prefix=prefix), i)
        for i in ("a", "b")
    )
    for runner in (first, second):
        runner.scheduler("reports").every(60, job, name="sync")
    await tick(clock, sleepers=2, times=3)
    await first.close()
    await tick(clock, sleepers=1, times=3)
    assert job.dues == minutes(1, 2, 3, 4, 5, 6)
    assert [instance for instance, _ in job.runs[3:]] == ["b", "b", "b"]


async def test_without_redis_every_instance_runs_its_jobs(
    clock: FakeClock, make_runner: Callable[..., JobRunner]
) -> None:
    """With local locks, each instance runs every due time itself."""
    job = Recorder()
    for name in ("a", "b"):
        make_runner(LocalRunLock(), name).scheduler("reports").every(60, job, name="sync")
    await tick(clock, sleepers=2, times=2)
    assert sorted(job.runs) == [(i, due) for i in ("a", "b") for due in minutes(1, 2)]


async def test_cron_jobs_run_at_their_minutes(
    clock: FakeClock, make_runner: Callable[..., JobRunner]
) -> None:
    """A cron job runs at the minutes its expression names."""
    job = Recorder()
    make_runner().scheduler("reports").cron("*/2 * * * *", job, name="even")
    await tick(clock, sleepers=1, times=5)
    assert job.dues == minutes(2, 4)


async def test_a_failing_job_is_logged_counted_and_kept(
    clock: FakeClock, make_runner: Callable[..., JobRunner], caplog: pytest.LogCaptureFixture
) -> None:
    """A job that raises is logged on its plugin's logger, counted, and runs again next time."""
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the mail server is down")

    job = make_runner().scheduler("mailer").every(60, flaky, name="send")
    with caplog.at_level(logging.ERROR, logger="nexus.plugins.mailer"):
        await tick(clock, sleepers=1, times=2)
    assert len(calls) == 2
    assert job.stats.runs == 2 and job.stats.failures == 1
    assert job.stats.last_error is None
    [record] = [r for r in caplog.records if r.name == "nexus.plugins.mailer"]
    assert record.getMessage() == (
        f"Scheduled job 'send' of plugin 'mailer' failed (run due at {minutes(1)[0].isoformat()})"
    )
    assert "the mail server is down" in caplog.text


async def test_a_job_never_overlaps_itself_and_misses_are_skipped(
    clock: FakeClock, make_runner: Callable[..., JobRunner]
) -> None:
    """Due times that pass while a run is still going are skipped, not run alongside or later."""
    gate = asyncio.Event()
    started: list[dt.datetime] = []

    async def slow() -> None:
        run = current_run()
        assert run is not None
        started.append(run.due)
        if len(started) == 1:
            await gate.wait()

    make_runner().scheduler("reports").every(60, slow, name="slow")
    await clock.wait_for_sleepers(1)
    clock.advance(MINUTE)
    for _ in range(3):
        await asyncio.sleep(0)
        clock.advance(MINUTE)
    await asyncio.sleep(0)
    assert started == minutes(1)
    gate.set()
    await tick(clock, sleepers=1)
    assert started == minutes(1, 5)


async def test_a_run_woken_after_its_period_is_missed(
    clock: FakeClock, make_runner: Callable[..., JobRunner], caplog: pytest.LogCaptureFixture
) -> None:
    """Waking after the next due time has come skips the stale run, with a warning."""
    job = Recorder()
    handle = make_runner().scheduler("reports")
    scheduled = handle.every(60, job, name="sync")
    await clock.wait_for_sleepers(1)
    with caplog.at_level(logging.WARNING, logger="nexus.plugins.scheduler"):
        clock.advance(2 * MINUTE)
        await tick(clock, sleepers=1)
    assert job.dues == minutes(3)
    assert scheduled.stats.missed == 1
    assert "skipped the run due at 2024-01-01T00:01:00+00:00" in caplog.text


async def test_runs_are_skipped_while_redis_is_down(
    own_redis: RedisServer, prefix: str, clock: FakeClock, make_runner: Callable[..., JobRunner]
) -> None:
    """Without Redis nobody knows who runs: runs are skipped, health says why; then resume."""
    job = Recorder()
    runner = make_runner(RedisRunLock(own_redis.url, instance_id="a", prefix=prefix), "a")
    scheduled = runner.scheduler("reports").every(60, job, name="sync")
    await tick(clock, sleepers=1)
    own_redis.stop()
    await tick(clock, sleepers=1, times=2)
    health = await runner.health()
    assert not health.ok
    assert f"127.0.0.1:{own_redis.port}" in health.detail
    assert "Scheduled runs are skipped" in health.detail
    assert scheduled.stats.lock_errors == 2
    restarted = start_redis(own_redis.port)
    try:
        await tick(clock, sleepers=1)
        assert (await runner.health()).ok
    finally:
        restarted.stop()
    assert job.dues == minutes(1, 4)
    assert runner.lock_error is None


async def test_cancel_stops_one_job(
    clock: FakeClock, make_runner: Callable[..., JobRunner]
) -> None:
    """A cancelled job runs no more; cancelling an unknown name answers False."""
    job, other = Recorder(), Recorder()
    handle = make_runner().scheduler("reports")
    handle.every(60, job, name="sync")
    handle.every(60, other, name="other")
    await tick(clock, sleepers=2)
    assert await handle.cancel("sync") is True
    assert await handle.cancel("sync") is False
    assert [j.name for j in handle.jobs()] == ["other"]
    await tick(clock, sleepers=1)
    assert (job.dues, other.dues) == (minutes(1), minutes(1, 2))


async def test_a_job_may_cancel_itself(
    clock: FakeClock, make_runner: Callable[..., JobRunner]
) -> None:
    """A job that cancels itself finishes that run and is not run again."""
    handle = make_runner().scheduler("reports")
    runs: list[int] = []

    async def once() -> None:
        runs.append(1)
        await handle.cancel("once")

    handle.every(60, once, name="once")
    await clock.wait_for_sleepers(1)
    clock.advance(MINUTE)
    async with asyncio.timeout(5):
        while handle.jobs() or clock.sleepers:  # noqa: ASYNC110 - the job ends in its own task
            await asyncio.sleep(0.001)
    clock.advance(MINUTE)
    assert runs == [1]


async def test_releasing_a_handle_stops_its_jobs_and_frees_the_names(
    clock: FakeClock, make_runner: Callable[..., JobRunner]
) -> None:
    """When a plugin stops, its jobs end; when it starts again it may use the same names."""
    runner = make_runner()
    job = Recorder()
    first = runner.scheduler("reports")
    first.every(60, job, name="sync")
    await tick(clock, sleepers=1)
    await runner.release(first)
    assert runner.jobs() == []
    with pytest.raises(SchedulerClosedError, match="Plugin 'reports' scheduled a job after"):
        first.every(60, job, name="late")
    again = runner.scheduler("reports")
    again.every(60, job, name="sync")
    await tick(clock, sleepers=1)
    assert job.dues == minutes(1, 2)


async def test_a_new_handle_replaces_the_plugins_old_one(
    clock: FakeClock, make_runner: Callable[..., JobRunner]
) -> None:
    """A restarted plugin's new handle stops the jobs its previous run left behind."""
    runner = make_runner()
    old, new = Recorder(), Recorder()
    runner.scheduler("reports").every(60, old, name="sync")
    await clock.wait_for_sleepers(1)
    runner.scheduler("reports").every(60, new, name="sync")
    await tick(clock, sleepers=1)
    assert (old.dues, new.dues) == ([], minutes(1))
    assert [(j.owner, j.name) for j in runner.jobs()] == [("reports", "sync")]


async def test_scheduling_mistakes_are_refused(make_runner: Callable[..., JobRunner]) -> None:
    """Duplicate or bad names, sync functions and impossible schedules raise at once."""
    handle = make_runner().scheduler("reports")
    job = Recorder()
    handle.every(60, job, name="sync")
    with pytest.raises(
        JobExistsError, match="Plugin 'reports' already has a scheduled job named 'sync'"
    ):
        handle.every(30, job, name="sync")
    with pytest.raises(ValueError, match="job name 'a b' must be 1 to 100 letters"):
        handle.every(60, job, name="a b")

    def sync_job() -> None: ...

    with pytest.raises(TypeError, match="must be an async function"):
        handle.every(60, sync_job, name="sync2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"at least 0\.001 seconds"):
        handle.every(0, job, name="zero")
    with pytest.raises(TypeError, match="seconds as a number or timedelta"):
        handle.every("60", job, name="text")  # type: ignore[arg-type]
    with pytest.raises(CronError, match="has 1 field"):
        handle.cron("hourly", job, name="hourly")
    assert [j.name for j in handle.jobs()] == ["sync"]


async def test_jobs_describe_themselves(
    clock: FakeClock, make_runner: Callable[..., JobRunner]
) -> None:
    """A job reports its schedule, next due time and what happened so far."""
    handle = make_runner().scheduler("reports")
    job = handle.every(dt.timedelta(minutes=5), Recorder(), name="sync")
    handle.cron("0 3 * * *", Recorder(), name="nightly")
    await clock.wait_for_sleepers(2)
    assert job.as_dict() == {
        "owner": "reports",
        "name": "sync",
        "schedule": "every 300 s",
        "next_due": (DEFAULT_START + 5 * MINUTE).isoformat(),
        "runs": 0,
        "failures": 0,
        "elsewhere": 0,
        "missed": 0,
        "lock_errors": 0,
        "last_due": None,
        "last_duration": None,
        "last_error": None,
    }
    assert [j.schedule for j in handle.jobs()] == ["cron 0 3 * * *", "every 300 s"]
    assert handle.instance_id == "solo"
    health = await handle._runner.health()
    assert health.ok and health.detail == "2 job(s), each run on this instance"

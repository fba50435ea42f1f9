"""JobRunner: runs every plugin's scheduled jobs on this instance, one run lock per due time.

Each job has one task that sleeps until the job is next due, claims that run's lock, and runs
the job if it won. A run is awaited before the next due time is computed, so a job never runs
concurrently with itself on one instance.

Missed runs are skipped, never caught up: due times that pass while a run is still going, or
while the instance sleeps or starts, are not run later. A run woken so late that its period
is over is skipped too (counted as `missed`). While the run locks cannot be taken (Redis
unreachable), runs are skipped: no instance can know whether another one runs them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from nexus.errors import NexusError
from nexus.kernel.plugin import Health
from nexus.plugins.scheduler.locks import LockUnavailableError, RunLock
from nexus.plugins.scheduler.triggers import Trigger
from nexus.redis import raise_if_cancelled

if TYPE_CHECKING:
    from nexus.plugins.scheduler.service import Scheduler

#: A job: an async function taking no arguments (`current_run()` tells which run it is).
JobFunction = Callable[[], Awaitable[object]]

_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,100}\Z")
_current_run: ContextVar[JobRun | None] = ContextVar("nexus_scheduler_run", default=None)


@dataclass(frozen=True, slots=True)
class JobRun:
    """The run in progress: which job, the due time it runs for, and on which instance."""

    owner: str
    job: str
    due: dt.datetime
    instance_id: str


def current_run() -> JobRun | None:
    """The run the calling job code belongs to (its due time is a good idempotency key)."""
    return _current_run.get()


@dataclass(slots=True)
class JobStats:
    """What happened to a job's due times on this instance."""

    runs: int = 0
    """Runs started here."""
    failures: int = 0
    """Runs that raised."""
    elsewhere: int = 0
    """Due times another instance claimed."""
    missed: int = 0
    """Due times skipped because the instance woke after their period was over."""
    lock_errors: int = 0
    """Due times skipped because the run lock could not be taken."""
    last_due: dt.datetime | None = None
    last_duration: float | None = None
    last_error: str | None = None


class JobExistsError(NexusError, ValueError):
    """A plugin scheduled two jobs with the same name."""

    def __init__(self, owner: str, name: str) -> None:
        self.owner, self.name = owner, name
        super().__init__(
            f"Plugin {owner!r} already has a scheduled job named {name!r}. Give each job its "
            f"own name, or cancel the old one first."
        )


class SchedulerClosedError(NexusError, RuntimeError):
    """A job was scheduled through a handle whose plugin (or the scheduler) has stopped."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        super().__init__(
            f"Plugin {owner!r} scheduled a job after the scheduler (or the plugin) stopped. "
            f"Schedule jobs in setup, with SCHEDULER got from ctx.services there."
        )


class Job:
    """A scheduled job of one plugin: its schedule, its next due time and its statistics."""

    def __init__(self, owner: str, name: str, trigger: Trigger, function: JobFunction) -> None:
        self.owner: Final = owner
        self.name: Final = name
        self.trigger: Final = trigger
        self.function: Final = function
        self.stats: Final = JobStats()
        self.next_due: dt.datetime | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def schedule(self) -> str:
        """How the job is scheduled: "every 60 s", "cron */5 * * * *"."""
        return self.trigger.describe()

    def as_dict(self) -> dict[str, object]:
        """JSON-able form, for admin views."""
        stats = self.stats
        return {
            "owner": self.owner,
            "name": self.name,
            "schedule": self.schedule,
            "next_due": self.next_due.isoformat() if self.next_due else None,
            "runs": stats.runs,
            "failures": stats.failures,
            "elsewhere": stats.elsewhere,
            "missed": stats.missed,
            "lock_errors": stats.lock_errors,
            "last_due": stats.last_due.isoformat() if stats.last_due else None,
            "last_duration": stats.last_duration,
            "last_error": stats.last_error,
        }

    def __repr__(self) -> str:
        return f"Job({self.owner}:{self.name}, {self.schedule})"


@dataclass(slots=True)
class JobGroup:
    """The jobs of one plugin's Scheduler handle."""

    jobs: dict[str, Job] = field(default_factory=dict)
    is_closed: bool = False


class JobRunner:
    """Runs the jobs of every plugin on this instance.

    Args:
        lock: who runs a run: `RedisRunLock` to run each once across instances,
            `LocalRunLock` to run everything here.
        instance_id: this instance's name, stored in the run locks it takes.
        clock, sleep: wall-clock seconds and how to wait (a FakeClock's in tests).
        min_lock_ttl: seconds a run's lock lives at least (longer for longer periods), so
            instances whose clocks differ by less than that never run one due time twice.
    """

    def __init__(
        self,
        lock: RunLock,
        *,
        instance_id: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        min_lock_ttl: float = 60.0,
        logger: logging.Logger | None = None,
        warn_interval: float = 30.0,
    ) -> None:
        self.lock: Final = lock
        self.instance_id: Final = instance_id
        self._clock, self._sleep = clock, sleep
        self._min_ttl_ms = max(1, round(min_lock_ttl * 1000))
        self._logger = logger or logging.getLogger("nexus.plugins.scheduler")
        self._owners: dict[str, JobGroup] = {}
        self._is_closed = False
        self._warn_interval = warn_interval
        self._next_warning = 0.0
        self.lock_error: str | None = None
        """Why the last run lock could not be taken; None once one was."""

    # -- what plugins use, through their Scheduler handle -------------------------------------

    def scheduler(self, owner: str) -> Scheduler:
        """A handle for `owner`'s jobs; a new handle replaces (and stops) an earlier one's."""
        from nexus.plugins.scheduler.service import Scheduler

        previous = self._owners.get(owner)
        if previous is not None:
            previous.is_closed = True
            for job in previous.jobs.values():
                self._stop(job)
        entry = self._owners[owner] = JobGroup()
        return Scheduler(self, owner, entry)

    async def release(self, scheduler: Scheduler) -> None:
        """Cancel every job of `scheduler` (its plugin stopped) and wait until they end."""
        entry = scheduler.entry
        entry.is_closed = True
        jobs = list(entry.jobs.values())
        entry.jobs.clear()
        if self._owners.get(scheduler.owner) is entry:
            del self._owners[scheduler.owner]
        await self._wait_stopped(jobs)

    def add(
        self, entry: JobGroup, owner: str, name: str, trigger: Trigger, function: object
    ) -> Job:
        """Start running `function` on `trigger`'s schedule as `owner`'s job `name`."""
        if self._is_closed or entry.is_closed:
            raise SchedulerClosedError(owner)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"Plugin {owner!r}: job name {name!r} must be 1 to 100 letters, digits or _ . - "
                f"(it is part of the run lock's Redis key)."
            )
        if not _is_async_callable(function):
            raise TypeError(
                f"Plugin {owner!r}: job {name!r} must be an async function (async def) taking "
                f"no arguments, got {function!r}."
            )
        if name in entry.jobs:
            raise JobExistsError(owner, name)
        job = Job(owner, name, trigger, function)  # type: ignore[arg-type]
        entry.jobs[name] = job
        job.task = asyncio.get_running_loop().create_task(
            self._loop(job), name=f"scheduler:{owner}:{name}"
        )
        return job

    async def cancel(self, entry: JobGroup, name: str) -> bool:
        """Stop one job; False if there is none of that name."""
        job = entry.jobs.pop(name, None)
        if job is None:
            return False
        await self._wait_stopped([job])
        return True

    # -- the runner as a whole ----------------------------------------------------------------

    def jobs(self) -> list[Job]:
        """Every job, by owner and name."""
        return [
            job
            for owner in sorted(self._owners)
            for _, job in sorted(self._owners[owner].jobs.items())
        ]

    async def close(self) -> None:
        """Stop every job and release the lock's connections."""
        self._is_closed = True
        jobs: list[Job] = []
        for entry in self._owners.values():
            entry.is_closed = True
            jobs.extend(entry.jobs.values())
            entry.jobs.clear()
        self._owners.clear()
        try:
            await self._wait_stopped(jobs)
        finally:
            await self.lock.aclose()

    async def health(self) -> Health:
        """Unhealthy while run locks cannot be taken (runs are skipped meanwhile)."""
        jobs = self.jobs()
        data = {
            "jobs": len(jobs),
            "failures": sum(job.stats.failures for job in jobs),
            "shared": self.lock.is_shared,
        }
        try:
            await self.lock.ping()
        except LockUnavailableError as exc:
            return Health.unhealthy(f"{exc} Scheduled runs are skipped until it answers.", **data)
        where = "once across instances" if self.lock.is_shared else "on this instance"
        return Health.healthy(f"{len(jobs)} job(s), each run {where}", **data)

    # -- internals ----------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _stop(self, job: Job) -> None:
        task = job.task
        if task is not None and not task.done():
            task.cancel()

    async def _wait_stopped(self, jobs: list[Job]) -> None:
        current = asyncio.current_task()
        tasks = []
        for job in jobs:
            self._stop(job)
            # A job cancelling itself ends at its next await; it cannot wait for itself.
            if job.task is not None and job.task is not current:
                tasks.append(job.task)
        if tasks:
            await asyncio.wait(tasks)

    async def _loop(self, job: Job) -> None:
        try:
            while True:
                raise_if_cancelled()  # a lock's client may have lost the cancellation
                now = self._now_ms()
                due = job.trigger.next_due(now)
                job.next_due = _datetime(due)
                while now < due:
                    await self._sleep((due - now) / 1000)
                    now = self._now_ms()
                following = job.trigger.next_due(due)
                if now >= following:
                    job.stats.missed += 1
                    self._logger.warning(
                        "Job %r of plugin %r: skipped the run due at %s, woken only at %s.",
                        job.name,
                        job.owner,
                        _datetime(due).isoformat(),
                        _datetime(now).isoformat(),
                    )
                    continue
                if await self._claim(job, due, ttl_ms=max(following - due, self._min_ttl_ms)):
                    await self._run(job, due)
        except asyncio.CancelledError:
            raise
        except Exception:  # a broken trigger or lock: the job cannot go on, the others can
            self._logger.exception("Job %r of plugin %r stopped", job.name, job.owner)

    async def _claim(self, job: Job, due: int, *, ttl_ms: int) -> bool:
        try:
            won = await self.lock.claim(job.owner, job.name, due, ttl_ms=ttl_ms)
        except LockUnavailableError as exc:
            job.stats.lock_errors += 1
            self.lock_error = str(exc)
            moment = time.monotonic()
            if moment >= self._next_warning:
                self._next_warning = moment + self._warn_interval
                self._logger.warning("%s Skipping scheduled runs until it answers.", exc)
            return False
        if self.lock_error is not None:
            self.lock_error = None
            self._logger.info("The scheduler's run locks answer again.")
        if not won:
            job.stats.elsewhere += 1
        return won

    async def _run(self, job: Job, due: int) -> None:
        stats = job.stats
        stats.runs += 1
        stats.last_due = _datetime(due)
        token = _current_run.set(JobRun(job.owner, job.name, _datetime(due), self.instance_id))
        started = time.perf_counter()
        try:
            await job.function()
        except Exception as exc:  # job code may raise anything: log it, keep the schedule
            stats.failures += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"
            # Logged on the owner's logger: the failure is that plugin's to fix.
            logging.getLogger(f"nexus.plugins.{job.owner}").error(
                "Scheduled job %r of plugin %r failed (run due at %s)",
                job.name,
                job.owner,
                _datetime(due).isoformat(),
                exc_info=exc,
            )
        else:
            stats.last_error = None
        finally:
            stats.last_duration = time.perf_counter() - started
            _current_run.reset(token)


def _datetime(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _is_async_callable(function: object) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 - an object with async __call__
    return callable(function) and inspect.iscoroutinefunction(call)

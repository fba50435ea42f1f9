"""The scheduler built-in plugin: jobs on an interval or a cron expression, once per run.

A plugin schedules its own jobs (manifest: `"services:use:scheduler"`, and `scheduler` in
`requires` or `optional`); they are cancelled when that plugin stops:

    scheduler = ctx.services.get(SCHEDULER)
    scheduler.every(300, self.sync, name="sync")            # 12:00, 12:05, ... (UTC)
    scheduler.cron("0 3 * * mon-fri", self.report, name="report")

With `plugins.scheduler.redis_url`, each run happens on exactly one instance: the first to
take its run lock in Redis. Missed runs are skipped, not caught up. `current_run()` tells a
job which due time it runs for.
"""

from __future__ import annotations

from nexus.plugins.scheduler.cron import CronError, CronExpression
from nexus.plugins.scheduler.locks import (
    LocalRunLock,
    LockUnavailableError,
    RedisRunLock,
    RunLock,
)
from nexus.plugins.scheduler.plugin import SchedulerPlugin
from nexus.plugins.scheduler.runner import (
    Job,
    JobExistsError,
    JobFunction,
    JobRun,
    JobRunner,
    JobStats,
    SchedulerClosedError,
    current_run,
)
from nexus.plugins.scheduler.service import SCHEDULER, Scheduler
from nexus.plugins.scheduler.settings import SchedulerSettings

__all__ = [
    "SCHEDULER",
    "CronError",
    "CronExpression",
    "Job",
    "JobExistsError",
    "JobFunction",
    "JobRun",
    "JobRunner",
    "JobStats",
    "LocalRunLock",
    "LockUnavailableError",
    "RedisRunLock",
    "RunLock",
    "Scheduler",
    "SchedulerClosedError",
    "SchedulerPlugin",
    "SchedulerSettings",
    "current_run",
]

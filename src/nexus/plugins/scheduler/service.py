"""The SCHEDULER service: each plugin's handle for scheduling its own jobs."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Final

from nexus.kernel.services import ServiceKey
from nexus.plugins.scheduler.triggers import Cron, Interval

if TYPE_CHECKING:
    from nexus.plugins.scheduler.runner import Job, JobFunction, JobGroup, JobRunner


class Scheduler:
    """Schedule this plugin's jobs; they stop when the plugin stops.

    ```python
    scheduler = ctx.services.get(SCHEDULER)         # manifest: "services:use:scheduler"
    scheduler.every(60, self.refresh, name="refresh")
    scheduler.cron("0 3 * * *", self.prune, name="prune")   # 03:00 UTC every day
    ```

    Each run happens on one instance when the scheduler plugin has a `redis_url`; missed
    runs are skipped, never caught up; a job never overlaps itself on one instance.
    """

    def __init__(self, runner: JobRunner, owner: str, entry: JobGroup) -> None:
        self._runner = runner
        self.owner: Final = owner
        self.entry: Final = entry

    def every(self, seconds: float | dt.timedelta, job: JobFunction, *, name: str) -> Job:
        """Run `job` at every multiple of `seconds` since the epoch (12:00:00, 12:01:00...)."""
        return self._runner.add(self.entry, self.owner, name, Interval(seconds), job)

    def cron(self, expression: str, job: JobFunction, *, name: str) -> Job:
        """Run `job` when the 5-field cron `expression` is due, in UTC ("*/5 * * * *")."""
        return self._runner.add(self.entry, self.owner, name, Cron(expression), job)

    async def cancel(self, name: str) -> bool:
        """Stop the job `name` (waiting for a run in progress); False if there is none."""
        return await self._runner.cancel(self.entry, name)

    def jobs(self) -> list[Job]:
        """This plugin's jobs, by name."""
        return [job for _, job in sorted(self.entry.jobs.items())]

    @property
    def instance_id(self) -> str:
        """The name of this instance in run locks."""
        return self._runner.instance_id


SCHEDULER: Final = ServiceKey[Scheduler]("scheduler", Scheduler)

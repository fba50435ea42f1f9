"""SchedulerPlugin: offers each plugin a Scheduler whose jobs stop when that plugin stops."""

from __future__ import annotations

from nexus import Health, Plugin, PluginContext
from nexus.plugins.scheduler.locks import LocalRunLock, LockUnavailableError, RedisRunLock, RunLock
from nexus.plugins.scheduler.runner import JobRunner
from nexus.plugins.scheduler.service import SCHEDULER
from nexus.plugins.scheduler.settings import SchedulerSettings, default_instance_id


class SchedulerPlugin(Plugin):
    """Provides SCHEDULER: `ctx.services.get(SCHEDULER)` schedules the calling plugin's jobs."""

    Config = SchedulerSettings

    def __init__(self) -> None:
        self.runner: JobRunner | None = None

    async def setup(self, ctx: PluginContext[SchedulerSettings]) -> None:
        """Open the run locks and offer a Scheduler to each consuming plugin."""
        settings = ctx.config
        instance_id = settings.instance_id or default_instance_id()
        lock: RunLock = LocalRunLock()
        if settings.redis_url is not None:
            lock = RedisRunLock(
                settings.redis_url.get_secret_value(),
                instance_id=instance_id,
                prefix=settings.key_prefix,
                timeout=settings.timeout,
            )
        runner = JobRunner(
            lock, instance_id=instance_id, min_lock_ttl=settings.min_lock_ttl, logger=ctx.logger
        )
        ctx.on_cleanup(runner.close)
        ctx.services.provide_scoped(SCHEDULER, runner.scheduler, release=runner.release)
        self.runner = runner
        if isinstance(lock, RedisRunLock):
            try:
                await lock.ping()
            except LockUnavailableError as exc:
                # Not fatal: runs are skipped (and /readyz says why) until Redis answers.
                ctx.logger.warning("%s", exc)
            ctx.logger.info("Run locks at %s; this instance is %r", lock.url, instance_id)
        else:
            ctx.logger.info("No redis_url: every instance runs every scheduled job itself")

    async def teardown(self, ctx: PluginContext[SchedulerSettings]) -> None:
        """Forget the runner (its cleanup stops the jobs)."""
        self.runner = None

    async def health(self) -> Health:
        """Unhealthy while run locks cannot be taken; reports jobs and failures."""
        if self.runner is None:
            return Health.unhealthy("the scheduler is not set up")
        return await self.runner.health()

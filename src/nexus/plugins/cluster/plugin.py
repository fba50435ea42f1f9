"""ClusterPlugin: keeps this instance on the cluster's desired plugin set, and reports it."""

from __future__ import annotations

from typing import Any

from nexus import Health, Plugin, PluginContext
from nexus.kernel.platform import PLATFORM
from nexus.plugins.cluster.control import CLUSTER, ClusterControl
from nexus.plugins.cluster.converger import Converger
from nexus.plugins.cluster.routes import build_router
from nexus.plugins.cluster.settings import ClusterSettings, default_instance_id
from nexus.plugins.cluster.store import ClusterStore, ClusterUnavailableError


class ClusterPlugin(Plugin):
    """Provides CLUSTER, serves /api/cluster, converges this instance and reports it."""

    Config = ClusterSettings

    def __init__(self) -> None:
        self.converger: Converger | None = None
        self.is_idle = False

    async def setup(self, ctx: PluginContext[ClusterSettings]) -> None:
        """Connect to Redis, then start converging, listening and reporting in the background."""
        settings = ctx.config
        if settings.redis_url is None:
            self.is_idle = True
            ctx.logger.info(
                "No plugins.cluster.redis_url: cluster control is off; this instance runs its "
                "plugins as configured"
            )
            return
        platform = ctx.services.get(PLATFORM)
        store = ClusterStore(
            settings.redis_url.get_secret_value(),
            prefix=settings.key_prefix,
            timeout=settings.timeout,
        )
        ctx.on_cleanup(store.aclose)
        instance_id = settings.instance_id or default_instance_id()
        converger = Converger(
            store,
            platform,
            plugin=ctx.name,
            instance_id=instance_id,
            heartbeat_interval=settings.heartbeat_interval,
            reconcile_interval=settings.reconcile_every,
            report_ttl=settings.ttl,
            logger=ctx.logger,
        )
        try:
            await converger.adopt()
        except ClusterUnavailableError as exc:
            # Not fatal: this instance runs as configured (and /readyz says why) until Redis
            # answers; then it converges.
            converger.last_error = str(exc)
            ctx.logger.warning("%s", exc)
        control = ClusterControl(store, platform, converger, plugin=ctx.name)
        ctx.services.provide(CLUSTER, control)

        async def publish(topic: str, data: dict[str, Any]) -> None:
            await ctx.events.publish(topic, data)

        ctx.http.include_router(build_router(control, publish))
        # The platform's operations wait for the kernel: these tasks act once start is done.
        ctx.tasks.spawn(converger.run_reconciler, name="reconcile")
        ctx.tasks.spawn(converger.run_listener, name="listen")
        ctx.tasks.spawn(converger.run_heartbeat, name="heartbeat")
        self.converger = converger
        ctx.logger.info("Cluster state at %s; this instance is %r", store.url, instance_id)

    async def teardown(self, ctx: PluginContext[ClusterSettings]) -> None:
        """Withdraw this instance's report: a stopped instance runs nothing."""
        converger, self.converger = self.converger, None
        if converger is not None:
            await converger.deregister()

    async def health(self) -> Health:
        """Unhealthy while Redis cannot be reached (the instance then keeps what it runs)."""
        converger = self.converger
        if self.is_idle:
            return Health.healthy("idle: set plugins.cluster.redis_url to join a cluster")
        if converger is None:
            return Health.unhealthy("the cluster plugin is not set up")
        if converger.last_error is not None:
            return Health.unhealthy(
                f"{converger.last_error} This instance keeps its plugins as they are meanwhile.",
                instance_id=converger.instance_id,
            )
        return Health.healthy(
            f"instance {converger.instance_id!r}", instance_id=converger.instance_id
        )

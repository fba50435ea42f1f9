"""The monitoring plugin: Prometheus metrics at /metrics."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator
from starlette.responses import Response

from nexus.kernel.context import PluginContext
from nexus.kernel.events import Event
from nexus.kernel.platform import PLATFORM
from nexus.kernel.plugin import Health, Plugin
from nexus.plugins.monitoring import multiprocess
from nexus.plugins.monitoring._prometheus import prometheus_client
from nexus.plugins.monitoring.collector import EventSync, PlatformCollector
from nexus.plugins.monitoring.requests import RequestMetrics, RequestTally

#: Prometheus text exposition format 0.0.4, which every Prometheus version scrapes.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH: Final = "/metrics"
DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MonitoringSettings(BaseModel):
    """`plugins.monitoring` in nexus.yaml."""

    multiprocess_dir: Path | None = Field(
        None,
        description=(
            "Directory for prometheus_client's multiprocess files (relative to data_dir). "
            "Default: $PROMETHEUS_MULTIPROC_DIR, else <data_dir>/metrics when server.workers > 1."
        ),
    )
    buckets: tuple[float, ...] = Field(
        DEFAULT_BUCKETS, description="Upper bounds (seconds) of the request duration histogram."
    )
    sync_interval: float = Field(
        5.0,
        gt=0,
        description="Multiprocess mode: how often a worker writes its event counters (seconds).",
    )

    @field_validator("buckets")
    @classmethod
    def _check_buckets(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(b <= 0 for b in value) or list(value) != sorted(set(value)):
            raise ValueError("must be increasing positive numbers of seconds, e.g. [0.1, 0.5, 1]")
        return value


class MonitoringPlugin(Plugin):
    """Serves /metrics; records every request's count and duration per plugin and route."""

    Config = MonitoringSettings

    def __init__(self) -> None:
        self.directory: Path | None = None

    async def setup(self, ctx: PluginContext[MonitoringSettings]) -> None:
        platform = ctx.services.get(PLATFORM)
        config = platform.config()
        workers = int(config.get("server", {}).get("workers", 1))
        directory = multiprocess.resolve_directory(
            ctx.config.multiprocess_dir, workers=workers, data_dir=Path(config["data_dir"])
        )
        self.directory = directory
        registry = prometheus_client.CollectorRegistry()
        metrics: RequestTally | RequestMetrics
        if directory is None:
            metrics = RequestTally(ctx.config.buckets, exclude=ctx.name)
            registry.register(metrics)
            registry.register(PlatformCollector(platform))
            # The usual process_* and python_* series; per process, so single-process mode only.
            prometheus_client.ProcessCollector(registry=registry)
            prometheus_client.PlatformCollector(registry=registry)
            prometheus_client.GCCollector(registry=registry)
            sync = None
        else:
            # Several uvicorn workers share the directory: a uvicorn worker's parent is the
            # master, which names the run; a lone process is its own run.
            run_id = os.getppid() if workers > 1 else os.getpid()
            removed = multiprocess.prepare_directory(directory, run_id=run_id)
            if removed:
                ctx.logger.info("Removed %d stale metrics file(s) from %s", len(removed), directory)
            multiprocess.enable(directory)
            metrics = RequestMetrics.create(buckets=ctx.config.buckets, exclude=ctx.name)
            prometheus_client.multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                registry, path=str(directory)
            )
            registry.register(PlatformCollector(platform, events=False))
            sync = EventSync(platform)
            ctx.tasks.spawn(_every(ctx.config.sync_interval, sync.sync), name="event_sync")
            ctx.on_cleanup(sync.sync)

        # Requests this plugin served (/metrics itself) are excluded by the metrics.
        ctx.http.observe_requests(metrics.observe)

        async def forget_routes(event: Event) -> None:
            # A plugin's routes may have been replaced: cached labels would keep old apps alive.
            metrics.forget_routes()

        ctx.events.subscribe("nexus.plugin.*", forget_routes)

        router = APIRouter()

        @router.get("", include_in_schema=False)
        async def scrape() -> Response:
            if sync is not None:
                sync.sync()
            return Response(prometheus_client.generate_latest(registry), media_type=CONTENT_TYPE)

        ctx.http.include_router(router, at=METRICS_PATH)

    async def health(self) -> Health:
        """Healthy; says whether metrics are per process or shared by workers."""
        if self.directory is None:
            return Health.healthy("metrics of this process")
        return Health.healthy(f"metrics shared by workers in {self.directory}")


def _every(interval: float, call: Callable[[], object]) -> Callable[[], Coroutine[Any, Any, None]]:
    async def repeat() -> None:
        while True:
            await asyncio.sleep(interval)
            call()

    return repeat

"""Kernel: owns configuration, the event bus, the service registry and the plugin manager."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from nexus.errors import NexusError
from nexus.kernel.config import EventSettings, NexusConfig, load_config
from nexus.kernel.context import FacetFactory, FacetKey
from nexus.kernel.discovery import PluginSource
from nexus.kernel.events import EventBus, Transport
from nexus.kernel.manager import PluginManager
from nexus.kernel.manifest import Manifest
from nexus.kernel.platform import PLATFORM, Platform
from nexus.kernel.plugin import Plugin
from nexus.kernel.services import ServiceRegistry

logger = logging.getLogger("nexus.kernel")


def inline_plugin(
    manifest: Manifest | dict[str, Any], factory: Callable[[], Plugin]
) -> PluginSource:
    """A plugin defined in code rather than found on disk (tests, embedding applications)."""
    if isinstance(manifest, dict):
        manifest = Manifest.model_validate({"entry": "inline:Plugin", **manifest})
    return PluginSource(manifest, "inline", f"inline plugin {manifest.name!r}", factory=factory)


def _configured_transport(events: EventSettings) -> Transport | None:
    """The transport `events.transport` names; None for the memory transport (the default)."""
    if events.transport == "memory":
        return None
    try:  # imported only when configured: the kernel itself never needs redis
        from nexus.redis import RedisTransport

        return RedisTransport.from_settings(events)
    except ImportError as exc:
        raise ImportError(
            "events.transport is 'redis', which needs the Redis client: "
            "pip install 'nexus-platform[redis]'"
        ) from exc


def _as_source(plugin: PluginSource | Plugin) -> PluginSource:
    if isinstance(plugin, PluginSource):
        return plugin
    manifest = getattr(plugin, "manifest", None)
    if not isinstance(manifest, Manifest | dict):
        raise NexusError(
            f"Inline plugin {plugin!r} needs a `manifest` attribute (a Manifest or a dict with "
            f"at least name and version), or pass inline_plugin(manifest, factory)."
        )
    return inline_plugin(manifest, lambda: plugin)


class Kernel:
    """The running platform without HTTP: `async with Kernel(config) as kernel: ...`.

    `entry_points` (default: `kernel.entry_points` in the config) says whether installed
    plugins of the `nexus.plugins` entry-point group are discovered, built-ins included.
    `transport` defaults to the one `events.transport` configures.
    """

    def __init__(
        self,
        config: NexusConfig | str | Path | None = None,
        *,
        plugins: Iterable[PluginSource | Plugin] = (),
        entry_points: bool | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.config = config if isinstance(config, NexusConfig) else load_config(config)
        events = self.config.events
        self.bus = EventBus(
            transport if transport is not None else _configured_transport(events),
            queue_size=events.queue_size,
            handler_timeout=events.handler_timeout,
            retries=events.retries,
            retry_delay=events.retry_delay,
            publish_timeout=events.publish_timeout,
            dead_letter_limit=events.dead_letter_limit,
        )
        self.services = ServiceRegistry()
        self._facets: dict[str, FacetFactory] = {}
        self.plugins = PluginManager(
            config=self.config,
            bus=self.bus,
            services=self.services,
            facets=self._facets,
            inline=[_as_source(plugin) for plugin in plugins],
            entry_points=self.config.kernel.entry_points if entry_points is None else entry_points,
        )
        self.is_started = False
        self._revoke_platform: Callable[[], None] = lambda: None

    def register_facet(self, key: FacetKey[Any], factory: FacetFactory) -> None:
        """Give every plugin context a `ctx.facet(key)` made by `factory` (before start)."""
        if self.is_started:
            raise NexusError(f"Register the {key.name!r} extension before the kernel starts.")
        self._facets[key.name] = factory

    async def start(self) -> None:
        """Start the bus, then discover and start the plugins."""
        if self.is_started:
            return
        await self.bus.start()
        revoke = self.services.provide(PLATFORM, Platform(self), provider="nexus")
        try:
            await self.plugins.start()
        except BaseException:
            revoke()
            await self.bus.close()
            raise
        self._revoke_platform = revoke
        self.is_started = True
        active = len(self.plugins.active())
        logger.info("Kernel started: %d of %d plugins active", active, len(self.plugins.statuses()))

    async def stop(self) -> None:
        """Stop the plugins in reverse order, then the bus."""
        if not self.is_started:
            return
        self.is_started = False
        try:
            await self.plugins.stop()
        finally:
            self._revoke_platform()
            await self.bus.close()

    async def reload_config(self) -> set[str]:
        """Re-read the configuration files; on errors nothing changes. Returns changed plugins."""
        new = self.config.reload()
        changed = await self.plugins.apply_config(new)
        self.config = new
        return changed

    async def __aenter__(self) -> Kernel:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

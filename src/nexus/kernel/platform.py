"""Platform: the running kernel as a service, for built-in plugins that watch or steer it.

Provided under `PLATFORM` by the kernel itself. A plugin needs `services:use:nexus.platform`
in its manifest to get it, so only plugins trusted with control (monitoring, admin) can.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from nexus._version import __version__
from nexus.kernel.services import ServiceInfo, ServiceKey

if TYPE_CHECKING:
    from nexus.kernel.events import DeadLetterStore, SubscriptionInfo, TopicStats
    from nexus.kernel.kernel import Kernel
    from nexus.kernel.plugin import Health
    from nexus.kernel.records import PluginStatus


class Platform:
    """Read the kernel's state and run lifecycle operations on its plugins."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self.version: Final = __version__
        self.started_at = time.time()

    @property
    def environment(self) -> str:
        """The configured environment (development, production, ...)."""
        return self._kernel.config.environment

    def statuses(self) -> list[PluginStatus]:
        """Every plugin's status, sorted by name."""
        return self._kernel.plugins.statuses()

    def status(self, name: str) -> PluginStatus:
        """One plugin's status (PluginNotFoundError if unknown)."""
        return self._kernel.plugins.status(name)

    async def health(self, *, timeout: float = 2.0) -> dict[str, Health]:
        """Every plugin's health check result."""
        return await self._kernel.plugins.health(timeout=timeout)

    def services(self) -> list[ServiceInfo]:
        """Every registered service and its provider."""
        return self._kernel.services.entries()

    def event_stats(self) -> dict[str, TopicStats]:
        """Event counters per topic."""
        return self._kernel.bus.stats

    def subscriptions(self) -> list[SubscriptionInfo]:
        """Every live event subscription."""
        return self._kernel.bus.subscriptions()

    @property
    def dead_letters(self) -> DeadLetterStore:
        """Events whose handlers failed after all retries; can be re-delivered."""
        return self._kernel.bus.dead_letters

    def config(self) -> dict[str, Any]:
        """The effective configuration with secrets redacted."""
        return self._kernel.config.redacted()

    async def enable(self, name: str) -> PluginStatus:
        """Enable and start a plugin."""
        return await self._kernel.plugins.enable(name)

    async def disable(self, name: str) -> PluginStatus:
        """Stop a plugin and keep it stopped."""
        return await self._kernel.plugins.disable(name)

    async def reload(self, name: str) -> PluginStatus:
        """Re-import a plugin from disk and restart it and its dependents."""
        return await self._kernel.plugins.reload(name)


PLATFORM: Final = ServiceKey[Platform]("nexus.platform", Platform)

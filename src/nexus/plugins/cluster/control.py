"""The CLUSTER service: change the desired plugin set and see what every instance runs."""

from __future__ import annotations

from typing import Final

from nexus.errors import NexusError
from nexus.kernel.correlation import actor as current_actor
from nexus.kernel.platform import Platform
from nexus.kernel.services import ServiceKey
from nexus.plugins.cluster.converger import Converger, protected_plugins
from nexus.plugins.cluster.state import DesiredPlugin, InstanceReport
from nexus.plugins.cluster.store import ClusterStore


class ProtectedPluginError(NexusError, ValueError):
    """The cluster plugin was asked to disable or reload itself or a plugin it depends on."""

    def __init__(self, name: str, cluster: str) -> None:
        self.name = name
        what = "itself" if name == cluster else f"{name!r}, which it depends on"
        super().__init__(
            f"The {cluster} plugin cannot disable or reload {what}: that would stop the "
            f"plugin doing it. Change it in each instance's configuration and restart instead."
        )


class ClusterControl:
    """Cluster-wide plugin control for trusted plugins (manifest: `services:use:cluster`).

    Changes are recorded in Redis and announced; every instance (this one included) then
    enables, disables or reloads the plugin on itself, and reports what it runs.
    """

    def __init__(
        self, store: ClusterStore, platform: Platform, converger: Converger, *, plugin: str
    ) -> None:
        self._store, self._platform, self._converger = store, platform, converger
        self._plugin: Final = plugin

    @property
    def instance_id(self) -> str:
        """This instance's id in the reports."""
        return self._converger.instance_id

    async def set_enabled(
        self, name: str, enabled: bool, *, actor: str | None = None
    ) -> DesiredPlugin:
        """Want `name` enabled (or disabled) on every instance.

        Raises PluginNotFoundError if it is not installed here, ProtectedPluginError for the
        cluster plugin and its dependencies, ClusterUnavailableError if Redis is down.
        """
        self._check(name)
        return await self._change(name, {"enabled": bool(enabled)}, actor)

    async def request_reload(
        self, name: str, *, version: str | None = None, actor: str | None = None
    ) -> DesiredPlugin:
        """Ask every instance to reload `name` once (re-import its code, restart dependents).

        `version`, if given, is the version every instance should run after it: instances
        still running another one say so in their reports.
        """
        self._check(name)
        changes: dict[str, object] = {"reload": True}
        if version is not None:
            changes["version"] = version
        return await self._change(name, changes, actor)

    async def forget(self, name: str) -> bool:
        """Drop the cluster's wish for `name`; instances keep running what they run now."""
        removed = await self._store.forget(name)
        self._converger.wake()
        return removed

    async def desired(self) -> dict[str, DesiredPlugin]:
        """The desired state of every plugin the cluster has a wish for."""
        return await self._store.desired()

    async def instances(self) -> list[InstanceReport]:
        """The latest report of every live instance, by id."""
        return await self._store.reports()

    def _check(self, name: str) -> None:
        self._platform.status(name)  # PluginNotFoundError names the installed plugins
        statuses = {status.name: status for status in self._platform.statuses()}
        if name in protected_plugins(self._plugin, statuses):
            raise ProtectedPluginError(name, self._plugin)

    async def _change(
        self, name: str, changes: dict[str, object], actor: str | None
    ) -> DesiredPlugin:
        who = actor or current_actor.get()
        desired = await self._store.change(name, {**changes, "actor": who})
        self._converger.wake()  # this instance need not wait for its own notice
        return desired


CLUSTER: Final = ServiceKey[ClusterControl]("cluster", ClusterControl)

"""Admin actions: plugin operations run through the platform (or the cluster), each announced.

Every action publishes `admin.<action>` with the acting user, the resource and the outcome,
which the audit plugin records. An operation that restarts the admin plugin itself (reloading
it, or disabling or reloading a plugin it depends on) runs after the response is sent: the
kernel waits for the plugin's requests to finish before stopping it, and the request asking
for the operation would otherwise be waiting for itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from nexus.errors import NexusError, PluginNotFoundError
from nexus.http.problems import ProblemError, ServiceUnavailableError
from nexus.kernel.correlation import actor as current_actor
from nexus.kernel.lifecycle import PluginState
from nexus.kernel.records import PluginStatus
from nexus.plugins.admin.cluster import plain, request, resolved, supports
from nexus.plugins.admin.graph import dependency_closure

if TYPE_CHECKING:
    from nexus.kernel.context import PluginEvents
    from nexus.kernel.platform import Platform

#: The state each operation should leave a plugin in.
_EXPECTED: Final = {
    "enable": PluginState.ACTIVE,
    "disable": PluginState.DISABLED,
    "reload": PluginState.ACTIVE,
}


class Operations:
    """Enable, disable and reload plugins for the dashboard, and announce every admin action.

    With a cluster plugin the change goes to the cluster's desired state, so every instance
    applies it; without one, this instance's platform applies it at once.
    """

    def __init__(
        self,
        *,
        name: str,
        platform: Platform,
        events: PluginEvents,
        cluster: Callable[[], Any | None],
        before_restart: Callable[[], None],
        logger: logging.Logger,
    ) -> None:
        self.name = name
        self._platform, self._events, self._cluster = platform, events, cluster
        self._before_restart = before_restart
        self._logger = logger
        self._detached: set[asyncio.Task[None]] = set()

    async def announce(self, action: str, *, resource: str, outcome: str, **details: Any) -> None:
        """Publish `admin.<action>` naming the acting user; never fails the action itself."""
        data = {
            "actor": current_actor.get() or "system",
            "resource": resource,
            "outcome": outcome,
            **details,
        }
        try:
            await self._events.publish(f"admin.{action}", data)
        except NexusError:
            self._logger.exception("Could not publish admin.%s: %s", action, data)

    def protected(self, plugin: str) -> str | None:
        """Why `plugin` cannot be disabled from the dashboard, if it cannot."""
        if plugin == self.name:
            return "it is the admin dashboard itself"
        needed = dependency_closure(self._platform.statuses(), self.name, optional=False)
        if plugin in needed:
            return "the admin dashboard requires it, so disabling it would lock you out"
        return None

    def restarts_admin(self, plugin: str, operation: str) -> bool:
        """Whether the operation stops and restarts the admin plugin along the way."""
        if operation == "enable":
            return False
        if plugin == self.name:
            return True
        return plugin in dependency_closure(self._platform.statuses(), self.name, optional=True)

    async def run(self, plugin: str, operation: str) -> dict[str, Any]:
        """Run `operation` on `plugin`; returns what happened (or that it was accepted)."""
        status = self._platform.status(plugin)  # PluginNotFoundError -> 404
        if operation == "disable":
            reason = self.protected(plugin)
            if reason is not None:
                await self.announce(
                    f"plugin.{operation}",
                    resource=f"plugin:{plugin}",
                    outcome="denied",
                    operation=operation,
                    reason=reason,
                )
                raise ProblemError(
                    409,
                    f"Plugin {plugin!r} cannot be disabled from the dashboard: {reason}. Use "
                    f"plugins.{plugin}.enabled in the configuration instead.",
                )
        cluster = self._cluster()
        restarts = self.restarts_admin(plugin, operation)
        if restarts:
            # Open event streams would hold the plugin's stop up; browsers reconnect.
            self._before_restart()
        if cluster is not None and supports(cluster, operation):
            return await self._ask_cluster(cluster, plugin, operation, status)
        if restarts:
            task = asyncio.get_running_loop().create_task(
                self._run_detached(plugin, operation), name=f"admin:{operation}:{plugin}"
            )
            self._detached.add(task)
            task.add_done_callback(self._detached.discard)
            return {
                "plugin": plugin,
                "operation": operation,
                "via": "platform",
                "accepted": True,
                "detail": "The dashboard restarts with this operation; it is back in a moment.",
                "status": status.to_dict(),
            }
        return await self._run_now(plugin, operation)

    async def _ask_cluster(
        self, cluster: Any, plugin: str, operation: str, status: PluginStatus
    ) -> dict[str, Any]:
        """Record the wish in the cluster; every instance (this one too) then applies it."""
        resource = f"plugin:{plugin}"
        try:
            desired = plain(
                await resolved(request(cluster, operation, plugin, actor=current_actor.get()))
            )
        except PluginNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - Redis and the cluster's own errors alike
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            await self.announce(
                f"plugin.{operation}",
                resource=resource,
                outcome="failure",
                operation=operation,
                via="cluster",
                error=reason,
            )
            if isinstance(exc, ValueError):  # the cluster protects what it depends on
                raise ProblemError(409, str(exc)) from None
            raise ServiceUnavailableError(
                f"The cluster could not record the change: {exc}", retry_after=5
            ) from None
        await self.announce(
            f"plugin.{operation}",
            resource=resource,
            outcome="success",
            operation=operation,
            via="cluster",
            desired=desired,
        )
        return {
            "plugin": plugin,
            "operation": operation,
            "via": "cluster",
            "accepted": True,
            "detail": "Every instance of the cluster applies it in a moment, this one included.",
            "desired": desired,
            "status": status.to_dict(),
        }

    async def _run_detached(self, plugin: str, operation: str) -> None:
        try:
            await self._run_now(plugin, operation)
        except Exception:
            self._logger.exception("Could not %s plugin %s", operation, plugin)

    async def _run_now(self, plugin: str, operation: str) -> dict[str, Any]:
        try:
            status = await getattr(self._platform, operation)(plugin)
        except Exception as exc:
            await self.announce(
                f"plugin.{operation}",
                resource=f"plugin:{plugin}",
                outcome="failure",
                operation=operation,
                via="platform",
                error=f"{type(exc).__name__}: {exc}".splitlines()[0],
            )
            raise
        outcome = "success" if status.state is _EXPECTED[operation] else "failure"
        await self.announce(
            f"plugin.{operation}",
            resource=f"plugin:{plugin}",
            outcome=outcome,
            operation=operation,
            via="platform",
            state=status.state.value,
            reason=status.reason,
        )
        return {
            "plugin": plugin,
            "operation": operation,
            "via": "platform",
            "accepted": False,
            "outcome": outcome,
            "status": status.to_dict(),
        }

    async def drain(self) -> None:
        """Wait until the operations running after their responses are done."""
        if self._detached:
            await asyncio.wait(set(self._detached))

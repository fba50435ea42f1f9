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

from nexus.errors import NexusError
from nexus.http.problems import ProblemError
from nexus.kernel.correlation import actor as current_actor
from nexus.kernel.lifecycle import PluginState
from nexus.plugins.admin.cluster import plain, resolved, supports
from nexus.plugins.admin.graph import dependency_closure

if TYPE_CHECKING:
    from nexus.kernel.context import PluginEvents
    from nexus.kernel.platform import Platform
    from nexus.kernel.records import PluginStatus

#: The state each operation should leave a plugin in.
_EXPECTED: Final = {
    "enable": PluginState.ACTIVE,
    "disable": PluginState.DISABLED,
    "reload": PluginState.ACTIVE,
}


class Operations:
    """Enable, disable and reload plugins for the dashboard, and announce every admin action."""

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
        via = "cluster" if cluster is not None and supports(cluster, operation) else "platform"
        if self.restarts_admin(plugin, operation):
            # Streams would hold the plugin's requests open; the browser reconnects.
            self._before_restart()
            task = asyncio.get_running_loop().create_task(
                self._run_detached(plugin, operation, via), name=f"admin:{operation}:{plugin}"
            )
            self._detached.add(task)
            task.add_done_callback(self._detached.discard)
            return {
                "plugin": plugin,
                "operation": operation,
                "via": via,
                "accepted": True,
                "detail": "The dashboard restarts with this operation; it is back in a moment.",
                "status": status.to_dict(),
            }
        return await self._run_now(plugin, operation, via)

    async def _run_detached(self, plugin: str, operation: str, via: str) -> None:
        try:
            await self._run_now(plugin, operation, via)
        except Exception:
            self._logger.exception("Could not %s plugin %s", operation, plugin)

    async def _run_now(self, plugin: str, operation: str, via: str) -> dict[str, Any]:
        result: Any = None
        try:
            if via == "cluster":
                result = plain(await resolved(getattr(self._cluster(), operation)(plugin)))
                status = self._platform.status(plugin)
            else:
                status = await getattr(self._platform, operation)(plugin)
        except Exception as exc:
            await self.announce(
                f"plugin.{operation}",
                resource=f"plugin:{plugin}",
                outcome="failure",
                operation=operation,
                via=via,
                error=f"{type(exc).__name__}: {exc}".splitlines()[0],
            )
            raise
        outcome = _outcome(status, operation, via)
        await self.announce(
            f"plugin.{operation}",
            resource=f"plugin:{plugin}",
            outcome=outcome,
            operation=operation,
            via=via,
            state=status.state.value,
            reason=status.reason,
        )
        return {
            "plugin": plugin,
            "operation": operation,
            "via": via,
            "accepted": False,
            "outcome": outcome,
            "status": status.to_dict(),
            **({"cluster": result} if via == "cluster" else {}),
        }

    async def drain(self) -> None:
        """Wait for detached operations (used by tests and on shutdown)."""
        if self._detached:
            await asyncio.wait(set(self._detached))


def _outcome(status: PluginStatus, operation: str, via: str) -> str:
    if via == "cluster":
        return "success"  # the cluster converges on its own; the local state may lag
    return "success" if status.state is _EXPECTED[operation] else "failure"

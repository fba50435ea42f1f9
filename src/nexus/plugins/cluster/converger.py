"""Converger: brings this instance's plugins in line with the desired set, and reports them.

Three background tasks:

- the reconciler compares the desired set with what runs here and calls the platform's
  enable, disable or reload; it runs when woken (a change notice, a change made here) and
  every `reconcile_interval` anyway, so an instance that missed notices still converges;
- the listener turns change notices from Redis pub/sub into wake-ups, reconnecting with
  backoff (and reconciling after each reconnect, for what it may have missed);
- the heartbeat writes this instance's report, which expires unless refreshed.

Each loop checks `raise_if_cancelled()` on every turn: redis-py can lose a cancellation.

The desired set wins over local changes: a plugin disabled here by hand while the cluster
wants it enabled is enabled again at the next reconciliation. The cluster plugin never acts
on itself or on a plugin it depends on (that would stop the very task doing the work).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
from typing import Final, Literal

from nexus._version import __version__
from nexus.errors import NexusError
from nexus.kernel.correlation import actor
from nexus.kernel.platform import Platform
from nexus.kernel.records import PluginStatus
from nexus.plugins.cluster.state import DesiredPlugin, InstanceReport, PluginReport
from nexus.plugins.cluster.store import ClusterStore, ClusterUnavailableError
from nexus.redis import raise_if_cancelled

Operation = Literal["enable", "disable", "reload"]

_FIRST_BACKOFF: Final = 0.1
_LAST_BACKOFF: Final = 5.0


def protected_plugins(name: str, statuses: dict[str, PluginStatus]) -> set[str]:
    """`name` and everything it requires or optionally uses, transitively.

    Disabling or reloading one of them would stop (or restart) `name` itself.
    """
    found, todo = {name}, [name]
    while todo:
        status = statuses.get(todo.pop())
        if status is None:
            continue
        for dependency in (*status.requires, *status.optional):
            if dependency not in found:
                found.add(dependency)
                todo.append(dependency)
    return found


class Converger:
    """Keeps this instance converged on the desired set and reports it."""

    def __init__(
        self,
        store: ClusterStore,
        platform: Platform,
        *,
        plugin: str,
        instance_id: str,
        heartbeat_interval: float,
        reconcile_interval: float,
        report_ttl: float,
        logger: logging.Logger,
        warn_interval: float = 30.0,
    ) -> None:
        self.store, self.platform = store, platform
        self.plugin: Final = plugin
        self.instance_id: Final = instance_id
        self.heartbeat_interval = heartbeat_interval
        self.reconcile_interval = reconcile_interval
        self.report_ttl = report_ttl
        self.logger = logger
        self.started_at: Final = dt.datetime.now(dt.UTC)
        self.last_error: str | None = None
        """Why the last exchange with Redis failed; None once one succeeds."""
        self._wake = asyncio.Event()
        self._wake.set()  # reconcile as soon as the task starts
        self._report_now = asyncio.Event()
        self._applied: dict[str, int] = {}  # plugin -> desired generation applied here
        self._reloads: dict[str, int] = {}  # plugin -> reload requests seen
        self._is_adopted = False  # whether the reload requests made before start were seen
        self._problems: dict[str, str] = {}  # plugin -> why it is not as wanted here
        self._warn_interval = warn_interval
        self._next_warning = 0.0

    def wake(self) -> None:
        """Reconcile soon (a change was made)."""
        self._wake.set()

    # -- tasks --------------------------------------------------------------------------------

    async def run_reconciler(self) -> None:
        """Reconcile whenever woken, and every reconcile interval."""
        while True:
            raise_if_cancelled()
            try:
                async with asyncio.timeout(self.reconcile_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.reconcile()
            except ClusterUnavailableError as exc:
                self._failed(exc)
            except Exception:  # a bug must not end reconciling for the life of the instance
                self.logger.exception("Reconciling with the desired plugin set failed")
            self._report_now.set()

    async def run_heartbeat(self) -> None:
        """Write this instance's report every heartbeat interval (and after reconciling)."""
        while True:
            raise_if_cancelled()
            self._report_now.clear()
            try:
                await self.store.write_report(self.report(), ttl=self.report_ttl)
            except ClusterUnavailableError as exc:
                self._failed(exc)
            else:
                self._recovered()
            try:
                async with asyncio.timeout(self.heartbeat_interval):
                    await self._report_now.wait()
            except TimeoutError:
                pass

    async def run_listener(self) -> None:
        """Wake the reconciler on every change notice; reconnect with backoff."""
        backoff = _FIRST_BACKOFF
        while True:
            try:
                async with self.store.changes() as notices:
                    self.wake()  # notices may have been missed while not subscribed
                    backoff = _FIRST_BACKOFF
                    while True:
                        raise_if_cancelled()
                        message = await notices.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None:
                            self.wake()
            except ClusterUnavailableError as exc:
                self._failed(exc)
            except Exception as exc:  # the client's errors are known only at runtime
                if not isinstance(exc, self.store.errors):
                    raise
                self._failed(exc)
            raise_if_cancelled()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _LAST_BACKOFF)

    async def deregister(self) -> None:
        """Withdraw this instance's report (it stops); errors are only logged."""
        try:
            await self.store.remove_report(self.instance_id)
        except ClusterUnavailableError as exc:
            self.logger.warning("Could not withdraw this instance's report: %s", exc)

    # -- one reconciliation -------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Apply the desired set to this instance once."""
        desired = await self.store.desired()
        if not self._is_adopted:
            self._adopt(desired)
        statuses = {status.name: status for status in self.platform.statuses()}
        protected = protected_plugins(self.plugin, statuses)
        problems: dict[str, str] = {}
        for name, want in sorted(desired.items()):
            status = statuses.get(name)
            if status is None:
                problems[name] = "not installed on this instance"
                continue
            if name in protected:
                if want.enabled is False or want.reloads > self._reloads.get(name, 0):
                    problems[name] = (
                        f"the cluster plugin needs {name!r} (or is it), so it does not "
                        f"disable or reload it"
                    )
                self._reloads[name] = want.reloads
                continue
            try:
                status = await self._converge(name, want, status)
            except NexusError as exc:
                problems[name] = str(exc)
                self.logger.error("Could not bring plugin %r in line: %s", name, exc)
            if want.version is not None and status.version != want.version:
                problems.setdefault(
                    name, f"runs version {status.version}, the cluster wants {want.version}"
                )
            self._applied[name] = want.generation
        for name in set(self._applied) - set(desired):
            del self._applied[name]  # the wish was withdrawn
        self._problems = problems
        self._recovered()

    async def adopt(self) -> None:
        """Count the reload requests made so far as done: this instance has just loaded its code.

        Called in setup, so that a request made once the instance runs is carried out; if
        Redis is down then, the first reconciliation adopts instead.
        """
        self._adopt(await self.store.desired())

    def _adopt(self, desired: dict[str, DesiredPlugin]) -> None:
        self._reloads = {name: want.reloads for name, want in desired.items()}
        self._is_adopted = True

    async def _converge(self, name: str, want: DesiredPlugin, status: PluginStatus) -> PluginStatus:
        seen = self._reloads.get(name, 0)
        operation: Operation | None = None
        if want.enabled is not None and want.enabled != status.enabled:
            operation = "enable" if want.enabled else "disable"
        elif want.reloads > seen and status.enabled:
            operation = "reload"
        if operation is not None:
            status = await self._apply(name, operation, want)
        self._reloads[name] = want.reloads
        return status

    async def _apply(self, name: str, operation: Operation, want: DesiredPlugin) -> PluginStatus:
        self.logger.info(
            "Plugin %r: %s, as %s asked (generation %d)",
            name,
            operation,
            want.actor or "the cluster",
            want.generation,
        )
        # The kernel names the actor in its nexus.plugin.<operation> event (the audit log).
        token = actor.set(want.actor or f"cluster:{self.instance_id}")
        try:
            if operation == "enable":
                return await self.platform.enable(name)
            if operation == "disable":
                return await self.platform.disable(name)
            return await self.platform.reload(name)
        finally:
            actor.reset(token)

    # -- reporting ----------------------------------------------------------------------------

    def report(self) -> InstanceReport:
        """What this instance runs right now."""
        plugins = {
            status.name: PluginReport(
                state=status.state.value,
                version=status.version,
                enabled=status.enabled,
                generation=self._applied.get(status.name),
                problem=self._problems.get(status.name) or status.reason,
            )
            for status in self.platform.statuses()
        }
        return InstanceReport(
            id=self.instance_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            nexus_version=__version__,
            started_at=self.started_at,
            heartbeat_at=dt.datetime.now(dt.UTC),
            plugins=plugins,
        )

    def _failed(self, exc: BaseException) -> None:
        reason = str(exc) if isinstance(exc, NexusError) else f"{self.store.url}: {exc!r}"
        self.last_error = reason
        moment = time.monotonic()
        if moment >= self._next_warning:
            self._next_warning = moment + self._warn_interval
            self.logger.warning("%s Retrying.", reason)

    def _recovered(self) -> None:
        if self.last_error is not None:
            self.last_error = None
            self.logger.info("The cluster state at %s answers again.", self.store.url)

"""PluginManager: starts, stops, enables, disables, reloads, loads and unloads plugins.

Every operation changes what is wanted, then `_reconcile` brings the running set in line with
it: start order comes from the dependency graph, and a failure stays with the plugin that
caused it (and the plugins that require it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from nexus._version import __version__
from nexus.errors import (
    ConfigError,
    NexusError,
    PluginNotFoundError,
    PluginStateError,
    StartupError,
)
from nexus.kernel import discovery as discovery_module
from nexus.kernel.context import (
    FacetFactory,
    Ownership,
    PluginContext,
    PluginEvents,
    PluginServices,
    PluginTasks,
)
from nexus.kernel.correlation import actor as current_actor
from nexus.kernel.graph import resolve
from nexus.kernel.lifecycle import Failure, PluginState, check_transition
from nexus.kernel.permissions import Permissions
from nexus.kernel.plugin import Health, Plugin
from nexus.kernel.records import PluginRecord, PluginStatus

if TYPE_CHECKING:
    from nexus.kernel.config import NexusConfig
    from nexus.kernel.discovery import PluginSource
    from nexus.kernel.events import EventBus
    from nexus.kernel.services import ServiceRegistry

logger = logging.getLogger("nexus.kernel")

S = PluginState
#: (plugin name, old state, new state, operation in progress)
Listener = Callable[[str, PluginState, PluginState, str], None]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class PluginManager:
    """Owns the plugin records and every lifecycle operation on them."""

    def __init__(
        self,
        *,
        config: NexusConfig,
        bus: EventBus,
        services: ServiceRegistry,
        facets: dict[str, FacetFactory],
        inline: Iterable[PluginSource] = (),
        entry_points: bool = True,
    ) -> None:
        self.config = config
        self._bus, self._services, self._facets = bus, services, facets
        self._inline = {source.name: source for source in inline}
        self._entry_points = entry_points
        self._records: dict[str, PluginRecord] = {}
        self._active_order: list[str] = []
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._operation = "start"

    # -- queries -----------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def status(self, name: str) -> PluginStatus:
        """The status of one plugin."""
        return self._record(name).status()

    def statuses(self) -> list[PluginStatus]:
        """The status of every known plugin, sorted by name."""
        return [self._records[name].status() for name in sorted(self._records)]

    def active(self) -> list[str]:
        """Active plugins in start order."""
        return list(self._active_order)

    def plugin(self, name: str) -> Plugin | None:
        """The running instance of an active plugin."""
        return self._record(name).instance

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every state change; returns a callable that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def health(self, *, timeout: float = 2.0) -> dict[str, Health]:
        """Every plugin's health; a plugin that is not active, or times out, is unhealthy."""

        async def check(record: PluginRecord) -> Health:
            if record.state is not S.ACTIVE or record.instance is None:
                reason = record.status().reason or f"plugin is {record.state.value}"
                return Health.unhealthy(reason)
            try:
                async with asyncio.timeout(timeout):
                    return await record.instance.health()
            except TimeoutError:
                return Health.unhealthy(f"health check did not answer within {timeout:g} s")
            except Exception as exc:  # noqa: BLE001 - plugin code may raise anything
                return Health.unhealthy(f"health check raised {_one_line(exc)}")

        records = [self._records[name] for name in sorted(self._records)]
        results = await asyncio.gather(*(check(record) for record in records))
        return {record.name: result for record, result in zip(records, results, strict=True)}

    def _record(self, name: str) -> PluginRecord:
        record = self._records.get(name)
        if record is None:
            raise PluginNotFoundError(name, list(self._records))
        return record

    # -- startup and shutdown ---------------------------------------------------------------

    def discover(self) -> None:
        """Find every plugin and validate its manifest; imports no plugin code."""
        found = discovery_module.discover(
            self.config.plugin_paths, entry_points=self._entry_points, inline=self._inline.values()
        )
        for name, source in found.sources.items():
            record = PluginRecord(name, source)
            self._records[name] = record
            self._set(record, S.VALIDATED)
        for name, error in found.errors.items():
            record = PluginRecord(name, None, discovery_error=error, origin=name)
            self._records[name] = record
            self._fail(record, "validate", error)
        for record in self._records.values():
            record.wanted = self.config.plugin_enabled(record.name)
            if not record.wanted and record.state is S.VALIDATED:
                self._set(record, S.DISABLED)

    async def start(self) -> None:
        """Discover and start every enabled plugin; strict mode raises StartupError on failure."""
        async with self._operating("start"):
            if not self._records:
                self.discover()
            try:
                await self._reconcile()
            except StartupError:
                await self._stop_many(list(self._active_order))
                raise
            if self.config.kernel.strict:
                broken = [
                    s for s in self.statuses() if s.state in (S.FAILED, S.BLOCKED) and s.enabled
                ]
                if broken:
                    await self._stop_many(list(self._active_order))
                    lines = "\n".join(f"  - {s.name}: {s.reason}" for s in broken)
                    raise StartupError(
                        f"Strict mode: {len(broken)} plugin(s) could not start:\n{lines}"
                    )

    async def stop(self) -> None:
        """Stop every active plugin, dependents before their dependencies."""
        async with self._operating("stop"):
            await self._stop_many(list(self._active_order))

    # -- runtime operations -----------------------------------------------------------------

    async def enable(self, name: str) -> PluginStatus:
        """Enable a disabled plugin and start it (and plugins that were waiting for it)."""
        status = await self._enable(name)
        await self._announce("enable", name)
        return status

    async def _enable(self, name: str) -> PluginStatus:
        async with self._operating("enable"):
            record = self._record(name)
            record.wanted = True
            if record.state is S.DISABLED:
                self._set(record, S.VALIDATED if record.source else S.FAILED)
            await self._reconcile()
            return record.status()

    async def disable(self, name: str) -> PluginStatus:
        """Stop a plugin and keep it stopped; plugins that require it become blocked."""
        status = await self._disable(name)
        await self._announce("disable", name)
        return status

    async def _disable(self, name: str) -> PluginStatus:
        async with self._operating("disable"):
            record = self._record(name)
            record.wanted = False
            await self._stop_many(self._dependents_closure({name}))
            if record.state is not S.DISABLED:
                self._set(record, S.DISABLED)
            await self._reconcile()
            return record.status()

    async def reload(self, name: str) -> PluginStatus:
        """Re-import a plugin's code and manifest from disk and restart it and its dependents."""
        status = await self._reload(name)
        await self._announce("reload", name)
        return status

    async def _reload(self, name: str) -> PluginStatus:
        async with self._operating("reload"):
            record = self._record(name)
            await self._stop_many(self._dependents_closure({name}))
            source = record.source or self._rediscover(name)
            if source is not None:
                source.forget()
            self._refresh(record, source)
            await self._reconcile()
            return record.status()

    async def load(self, name: str) -> PluginStatus:
        """Discover a plugin that was installed or unloaded while running, and start it."""
        status = await self._load(name)
        await self._announce("load", name)
        return status

    async def _load(self, name: str) -> PluginStatus:
        async with self._operating("load"):
            if name in self._records:
                raise PluginStateError(
                    f"Plugin {name!r} is already loaded ({self._records[name].state.value}); "
                    f"use reload to pick up changes."
                )
            found = discovery_module.discover(
                self.config.plugin_paths,
                entry_points=self._entry_points,
                inline=self._inline.values(),
                only=name,
            )
            if name in found.errors:
                record = PluginRecord(name, None, discovery_error=found.errors[name], origin=name)
                self._records[name] = record
                self._fail(record, "validate", found.errors[name])
                return record.status()
            source = found.sources.get(name)
            if source is None:
                raise PluginNotFoundError(name, list(self._records))
            record = PluginRecord(name, source, wanted=self.config.plugin_enabled(name))
            self._records[name] = record
            self._set(record, S.VALIDATED if record.wanted else S.DISABLED)
            await self._reconcile()
            return record.status()

    async def unload(self, name: str) -> None:
        """Stop a plugin, forget its code and remove it; plugins requiring it become blocked."""
        await self._unload(name)
        await self._announce("unload", name)

    async def _unload(self, name: str) -> None:
        async with self._operating("unload"):
            record = self._record(name)
            await self._stop_many(self._dependents_closure({name}))
            if record.source is not None:
                record.source.forget()
            record.release()
            del self._records[name]
            await self._reconcile()

    async def apply_config(self, config: NexusConfig) -> set[str]:
        """Switch to a new configuration: validate it all first, then notify or restart plugins.

        Returns the names of the plugins whose configuration changed. On a validation error
        nothing changes and ConfigError lists every problem.
        """
        async with self._operating("config"):
            models = {
                r.name: r.plugin_class.Config
                for r in self._records.values()
                if r.plugin_class is not None
            }
            validated = config.validate_plugins(models)
            changed = self.config.changed_plugins(config)
            self.config = config
            restart: set[str] = set()
            for name in sorted(changed & set(self._records)):
                record = self._records[name]
                record.wanted = config.plugin_enabled(name)
                if not record.wanted:
                    await self._stop_many(self._dependents_closure({name}))
                    if record.state is not S.DISABLED:
                        self._set(record, S.DISABLED)
                elif record.state is S.DISABLED:
                    self._set(record, S.VALIDATED if record.source else S.FAILED)
                elif (
                    record.state is S.FAILED and record.failure and record.failure.stage == "config"
                ):
                    self._refresh(record, record.source)
                elif record.state is S.ACTIVE and record.instance and record.context:
                    new = validated.get(name)
                    if await self._notify_config(record, new):
                        record.context.config = new
                    else:
                        restart.add(name)
            if restart:
                await self._stop_many(self._dependents_closure(restart))
            await self._reconcile()
        for name in sorted(changed & set(self._records)):
            await self._announce("config", name)
        return changed

    # -- internals --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _operating(self, operation: str) -> Any:
        async with self._lock:
            self._operation = operation
            try:
                yield
            finally:
                self._operation = "idle"

    async def _announce(self, operation: str, name: str, **data: Any) -> None:
        """Publish `nexus.plugin.<operation>` so audit logs and dashboards can follow along."""
        if not self._bus.is_running:
            return
        record = self._records.get(name)
        payload: dict[str, Any] = {
            "plugin": name,
            "operation": operation,
            "state": record.state.value if record else "unloaded",
            "reason": record.status().reason if record else None,
            "actor": current_actor.get(),
            **data,
        }
        try:
            await self._bus.publish(f"nexus.plugin.{operation}", payload, source="nexus")
        except NexusError:
            logger.exception("Could not publish the %s event of plugin %s", operation, name)

    def _set(self, record: PluginRecord, state: PluginState) -> None:
        old = record.state
        check_transition(record.name, old, state)
        record.state = state
        if state is not S.BLOCKED:
            record.blocked_reason = None
        if state in (S.VALIDATED, S.RESOLVED):
            record.failure = None  # a fresh attempt
        for listener in list(self._listeners):
            try:
                listener(record.name, old, state, self._operation)
            except Exception:
                logger.exception("Plugin state listener failed for %s", record.name)

    def _fail(self, record: PluginRecord, stage: str, exc: BaseException | str) -> None:
        if isinstance(exc, BaseException):
            reason = str(exc) if isinstance(exc, NexusError) else _one_line(exc)
            text = "".join(traceback.format_exception(exc))
        else:
            reason, text = exc, ""
        record.failure = Failure(stage, reason, text)
        self._set(record, S.FAILED)
        logger.error("Plugin %s failed at %s: %s", record.name, stage, reason)

    def _block(self, record: PluginRecord, reason: str) -> None:
        if record.state is S.BLOCKED and record.blocked_reason == reason:
            return
        self._set(record, S.BLOCKED)
        record.blocked_reason = reason
        logger.warning("Plugin %s is blocked: it %s", record.name, reason)

    def _refresh(self, record: PluginRecord, source: PluginSource | None) -> None:
        """Re-read the manifest after a code change; back to validated, or failed."""
        if record.state is not S.VALIDATED:
            self._set(record, S.VALIDATED)
        if source is None:
            self._fail(record, "validate", f"plugin {record.name!r} is no longer installed")
            return
        try:
            record.source = source.reread()
        except NexusError as exc:
            self._fail(record, "validate", exc)
            return
        record.discovery_error = None

    def _rediscover(self, name: str) -> PluginSource | None:
        found = discovery_module.discover(
            self.config.plugin_paths,
            entry_points=self._entry_points,
            inline=self._inline.values(),
            only=name,
        )
        return found.sources.get(name)

    def _unavailable(self) -> dict[str, str]:
        phrases: dict[str, str] = {}
        for name, record in self._records.items():
            if record.source is None:
                phrases[name] = f"invalid ({record.failure.reason if record.failure else '?'})"
            elif not record.wanted:
                phrases[name] = "disabled"
            elif record.state is S.FAILED and record.failure is not None:
                phrases[name] = str(record.failure)
        return phrases

    async def _reconcile(self) -> None:
        for record in self._records.values():
            if not record.wanted and record.state in (S.VALIDATED, S.BLOCKED, S.STOPPED):
                self._set(record, S.DISABLED)
        manifests = {
            name: record.source.manifest
            for name, record in self._records.items()
            if record.source is not None
        }
        resolution = resolve(manifests, host_version=__version__, unavailable=self._unavailable())
        for name, reason in resolution.blocked.items():
            record = self._records[name]
            if record.state is S.ACTIVE:
                await self._stop_many(self._dependents_closure({name}))
            self._block(record, reason)
        for name in resolution.order:
            record = self._records[name]
            source = record.source
            if source is None or record.state not in (S.VALIDATED, S.BLOCKED, S.STOPPED):
                continue
            # A requirement may have failed earlier in this same pass.
            waiting = [
                d
                for d in sorted(source.manifest.requires)
                if self._records[d].state is not S.ACTIVE
            ]
            if waiting:
                dep = self._records[waiting[0]]
                self._block(
                    record,
                    f"needs {dep.name!r}, which {dep.status().reason or 'is ' + dep.state.value}",
                )
                continue
            await self._start_one(record, source)

    async def _start_one(self, record: PluginRecord, source: PluginSource) -> None:
        self._set(record, S.RESOLVED)
        began = time.perf_counter()
        try:
            factory = source.load_class()
        except Exception as exc:  # noqa: BLE001 - PluginImportError or a broken factory
            self._fail(record, "import", exc)
            return
        if source.kind != "inline" and not (
            isinstance(factory, type) and issubclass(factory, Plugin)
        ):
            self._fail(record, "import", f"{source.manifest.entry} is not a nexus.Plugin subclass")
            return
        if not callable(factory):
            self._fail(record, "import", f"plugin {record.name!r} has no factory")
            return
        try:
            instance = factory()
        except Exception as exc:  # noqa: BLE001 - plugin constructors may raise anything
            self._fail(record, "load", exc)
            return
        if not isinstance(instance, Plugin):
            self._fail(record, "load", f"{source.manifest.entry} did not produce a nexus.Plugin")
            return
        record.plugin_class = type(instance)
        try:
            config = self.config.validate_plugin(record.name, type(instance).Config)
        except ConfigError as exc:
            record.plugin_class = None
            self._fail(record, "config", exc)
            return
        self._set(record, S.LOADED)
        ownership = Ownership()
        context = self._context(record, source, config, ownership)
        record.instance, record.context, record.ownership = instance, context, ownership
        try:
            async with asyncio.timeout(self.config.kernel.setup_timeout):
                await instance.setup(context)
        except TimeoutError:
            await self._abort(
                record,
                "setup",
                f"setup did not finish within {self.config.kernel.setup_timeout:g} s "
                f"(kernel.setup_timeout)",
            )
            return
        except StartupError as exc:
            await self._abort(record, "setup", exc)
            if self._operation == "start":
                raise  # the plugin refuses to let the application start (e.g. no secret key)
            return
        except Exception as exc:  # noqa: BLE001 - plugin code may raise anything
            await self._abort(record, "setup", exc)
            return
        self._set(record, S.INITIALIZED)
        try:
            ownership.activate()
        except Exception as exc:  # noqa: BLE001 - e.g. a service conflict on activation
            await self._abort(record, "activate", exc)
            return
        record.boot_seconds = time.perf_counter() - began
        self._active_order.append(record.name)
        self._set(record, S.ACTIVE)

    def _context(
        self,
        record: PluginRecord,
        source: PluginSource,
        config: BaseModel | None,
        ownership: Ownership,
    ) -> PluginContext[Any]:
        manifest = source.manifest
        name = record.name
        permissions = Permissions(name, manifest.permissions)
        plugin_logger = logging.getLogger(f"nexus.plugins.{name}")

        def on_crash(exc: BaseException) -> None:
            record.last_error = f"background task crashed: {_one_line(exc)}"

        return PluginContext(
            name=name,
            manifest=manifest,
            config=config,
            events=PluginEvents(self._bus, name, permissions, ownership),
            services=PluginServices(
                self._services, name, manifest, permissions, ownership, self._service_hint
            ),
            tasks=PluginTasks(name, ownership, plugin_logger, on_crash),
            ownership=ownership,
            permissions=permissions,
            logger=plugin_logger,
            data_dir=Path(self.config.data_dir) / "plugins" / name,
            environment=self.config.environment,
            facets=self._facets,
        )

    def _service_hint(self, key: str, requester: str) -> str:
        providers = [
            r
            for r in self._records.values()
            if r.manifest is not None and key in r.manifest.provides
        ]
        if not providers:
            return (
                f'No installed plugin lists {key!r} in its manifest\'s "provides"; install one '
                f"that does."
            )
        parts = []
        for provider in sorted(providers, key=lambda r: r.name):
            status = provider.status()
            parts.append(f"{provider.name!r} ({status.reason or status.state.value})")
        hint = f"It is provided by {', '.join(parts)}."
        requester_record = self._records.get(requester)
        manifest = requester_record.manifest if requester_record else None
        if manifest is not None and not any(p.name in manifest.requires for p in providers):
            hint += (
                f" Add {providers[0].name!r} to the `requires` of {requester!r} so it starts first."
            )
        return hint

    async def _notify_config(self, record: PluginRecord, config: BaseModel | None) -> bool:
        if record.instance is None or record.context is None:
            return False
        try:
            return bool(await record.instance.on_config_change(record.context, config))
        except Exception:
            logging.getLogger(f"nexus.plugins.{record.name}").exception(
                "on_config_change failed; restarting the plugin instead"
            )
            return False

    async def _abort(self, record: PluginRecord, stage: str, exc: BaseException | str) -> None:
        """Undo a half-started plugin: nothing it staged stays registered.

        Its teardown is not called (its setup never completed); its cleanups are.
        """
        if record.ownership is not None:
            for revoke in record.ownership.drain():
                await self._call_revoker(record, revoke)
        record.release()
        self._fail(record, stage, exc)

    async def _teardown(self, record: PluginRecord) -> None:
        if record.instance is None or record.context is None:
            return
        timeout = self.config.kernel.teardown_timeout
        try:
            async with asyncio.timeout(timeout):
                await record.instance.teardown(record.context)
        except TimeoutError:
            logger.error("Plugin %s: teardown did not finish within %g s", record.name, timeout)
        except Exception:
            logger.exception("Plugin %s: teardown failed", record.name)

    def _dependents_closure(self, names: set[str]) -> list[str]:
        """Active plugins among `names` and everything that depends on them, in start order."""
        affected = set(names)
        changed = True
        while changed:
            changed = False
            for name in self._active_order:
                manifest = self._records[name].manifest
                if name in affected or manifest is None:
                    continue
                if affected & (set(manifest.requires) | set(manifest.optional)):
                    affected.add(name)
                    changed = True
        return [name for name in self._active_order if name in affected]

    async def _stop_many(self, names: list[str]) -> None:
        for name in reversed(names):
            record = self._records.get(name)
            if record is not None and record.state is S.ACTIVE:
                await self._stop_one(record)

    async def _stop_one(self, record: PluginRecord) -> None:
        self._set(record, S.STOPPING)
        ownership = record.ownership
        for phase in ("ingress", "tasks"):
            for revoke in ownership.take(phase) if ownership else []:
                await self._call_revoker(record, revoke)
            if phase == "ingress":
                # Unsubscribing cancels the plugin's handlers; none may run on into teardown.
                await self._bus.settle(timeout=self.config.kernel.teardown_timeout)
        await self._teardown(record)
        for revoke in ownership.take("services") if ownership else []:
            await self._call_revoker(record, revoke)
        record.release()
        with contextlib.suppress(ValueError):
            self._active_order.remove(record.name)
        self._set(record, S.STOPPED)

    async def _call_revoker(self, record: PluginRecord, revoke: Callable[[], object]) -> None:
        try:
            result = revoke()
            if asyncio.iscoroutine(result):
                async with asyncio.timeout(self.config.kernel.teardown_timeout):
                    await result
        except Exception:
            logger.exception("Plugin %s: releasing a registration failed", record.name)


def iter_failures(statuses: Iterable[PluginStatus]) -> Iterator[PluginStatus]:
    """The statuses of plugins that are enabled but failed or blocked."""
    return (s for s in statuses if s.enabled and s.state in (S.FAILED, S.BLOCKED))

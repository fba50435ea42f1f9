"""PluginContext: a plugin's scoped view of the bus, services, tasks, config and extensions.

Everything registered through a context is owned by the platform: staged while the plugin sets
up, made visible together when it becomes active, and revoked when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, Protocol, TypeVar, cast, overload

from nexus.errors import NexusError, ServiceNotFoundError
from nexus.kernel.permissions import Permissions
from nexus.kernel.services import KeyLike, ServiceKey, ServiceRegistry, key_name

if TYPE_CHECKING:
    from nexus.kernel.events import DeliveryReport, Event, EventBus, Handler, Unsubscribe
    from nexus.kernel.manifest import Manifest

T = TypeVar("T")
ConfigT = TypeVar("ConfigT")
Revoke = Callable[[], object]


class Facet(Protocol):
    """A per-plugin extension (such as HTTP routes) whose registrations the kernel owns."""

    def activate(self) -> None:
        """Make everything staged during setup visible at once."""

    def revoke(self) -> object:
        """Remove everything the plugin registered through this facet (may be awaitable)."""


class FacetKey(Generic[T]):
    """A typed name for a facet, e.g. `HTTP = FacetKey[HttpFacet]("http")`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"FacetKey({self.name!r})"


class HttpFacet(Protocol):
    """What a plugin can do with HTTP; implemented by `nexus.http`."""

    def include_router(self, router: Any, *, prefix: str = "", at: str | None = None) -> None:
        """Serve a FastAPI APIRouter under /api/<plugin><prefix>, or under `at` (e.g. "/admin")."""

    def add_middleware(
        self,
        middleware: Any,
        *,
        position: int = 0,
        stage: Literal["authentication", "application"] = "application",
        **options: Any,
    ) -> None:
        """Add a pure ASGI middleware class; lower positions wrap outermost within a stage."""

    def observe_requests(
        self, observer: Callable[[str | None, Any, int, float, bool], None]
    ) -> None:
        """Call `observer(plugin, scope, status, seconds, streamed)` after every HTTP request."""


HTTP: Final = FacetKey[HttpFacet]("http")

FacetFactory = Callable[["PluginContext[Any]"], Facet]


class Ownership:
    """One plugin's registrations: staged until activation, then revocable in phases."""

    __slots__ = ("_next", "is_active", "pending", "revokers")

    #: Revocation phases, in the order a stopping plugin goes through them.
    PHASES: Final = ("ingress", "tasks", "services")

    def __init__(self) -> None:
        self.is_active = False
        self._next = 0
        self.pending: dict[int, tuple[str, Callable[[], Revoke | None]]] = {}
        self.revokers: dict[int, tuple[str, Revoke]] = {}

    def register(self, phase: str, activate: Callable[[], Revoke | None]) -> Callable[[], None]:
        """Stage `activate` (or run it now if active); returns a callable that undoes it."""
        token = self._next
        self._next += 1
        if self.is_active:
            self._run(token, phase, activate)
        else:
            self.pending[token] = (phase, activate)

        def undo() -> None:
            self.pending.pop(token, None)
            entry = self.revokers.pop(token, None)
            if entry is not None:
                entry[1]()

        return undo

    def add_cleanup(self, callback: Revoke) -> None:
        """Run `callback` when the plugin stops, even if its setup fails later on."""
        token = self._next
        self._next += 1
        self.revokers[token] = ("services", callback)

    def _run(self, token: int, phase: str, activate: Callable[[], Revoke | None]) -> None:
        revoke = activate()
        if revoke is not None:
            self.revokers[token] = (phase, revoke)

    def activate(self) -> None:
        """Run every staged registration; on error the caller drains what already ran."""
        pending, self.pending = self.pending, {}
        for token, (phase, activate) in pending.items():
            self._run(token, phase, activate)
        self.is_active = True

    def take(self, phase: str) -> list[Revoke]:
        """Remove and return the revokers of one phase, newest first."""
        tokens = [t for t, (p, _) in self.revokers.items() if p == phase]
        return [self.revokers.pop(t)[1] for t in reversed(tokens)]

    def drain(self) -> list[Revoke]:
        """Drop what is staged and return every revoker, in the order to call them."""
        self.is_active = False
        self.pending.clear()
        return [revoke for phase in self.PHASES for revoke in self.take(phase)]


class PluginEvents:
    """Publish and subscribe as this plugin, within the topics its manifest grants."""

    __slots__ = ("_bus", "_name", "_ownership", "_permissions")

    def __init__(
        self, bus: EventBus, name: str, permissions: Permissions, ownership: Ownership
    ) -> None:
        self._bus, self._name = bus, name
        self._permissions, self._ownership = permissions, ownership

    async def publish(self, topic: str, data: Any = None, *, priority: int = 0) -> Event:
        """Publish an event from this plugin."""
        if not self._permissions.can_publish(topic):
            self._permissions.check_publish(topic)
        return await self._bus.publish(topic, data, source=self._name, priority=priority)

    async def publish_and_wait(
        self, topic: str, data: Any = None, *, priority: int = 0, timeout: float | None = None
    ) -> DeliveryReport:
        """Publish, then wait until every matching handler has finished with the event."""
        self._permissions.check_publish(topic)
        return await self._bus.publish_and_wait(
            topic, data, source=self._name, priority=priority, timeout=timeout
        )

    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        priority: int = 0,
        *,
        mode: Literal["shared", "broadcast"] = "shared",
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Unsubscribe:
        """Handle events matching `pattern`; returns a callable that unsubscribes."""
        from nexus.kernel.topics import validate_pattern

        validate_pattern(pattern)
        self._permissions.check_subscribe(pattern)
        bus, name = self._bus, self._name

        def activate() -> Revoke:
            return bus.subscribe(
                pattern,
                handler,
                priority=priority,
                owner=name,
                mode=mode,
                timeout=timeout,
                retries=retries,
            )

        return self._ownership.register("ingress", activate)


class PluginServices:
    """Provide services and get the ones this plugin's manifest allows."""

    __slots__ = (
        "_hint",
        "_name",
        "_ownership",
        "_permissions",
        "_provides",
        "_registry",
        "_scoped",
    )

    def __init__(
        self,
        registry: ServiceRegistry,
        name: str,
        manifest: Manifest,
        permissions: Permissions,
        ownership: Ownership,
        hint: Callable[[str, str], str],
    ) -> None:
        self._registry, self._name, self._permissions = registry, name, permissions
        self._provides = frozenset(manifest.provides)
        self._ownership, self._hint = ownership, hint
        # this plugin's instances of scoped services, with the registration they came from
        self._scoped: dict[str, tuple[object, object]] = {}

    def provide(self, key: KeyLike[T], service: T) -> None:
        """Offer `service` under `key` to other plugins while this plugin is active."""
        self._check_provides(key_name(key))
        registry, provider = self._registry, self._name
        self._ownership.register(
            "services", lambda: registry.provide(key, service, provider=provider)
        )

    def provide_scoped(
        self,
        key: KeyLike[T],
        factory: Callable[[str], T],
        *,
        release: Callable[[T], object] | None = None,
    ) -> None:
        """Offer a service made per consuming plugin: `factory(consumer_name)`.

        Each consumer gets its own instance (say, a cache namespace), made on its first `get`
        and dropped when the consumer stops. `release(instance)` (may be async), if given, is
        called then too, after the consumer's teardown: to drop what it registered (jobs...).
        """
        self._check_provides(key_name(key))
        registry, provider = self._registry, self._name
        self._ownership.register(
            "services",
            lambda: registry.provide_scoped(key, factory, provider=provider, release=release),
        )

    def _check_provides(self, name: str) -> None:
        if name not in self._provides:
            listed = ", ".join(sorted(self._provides)) or "nothing"
            raise NexusError(
                f"Plugin {self._name!r} provides service {name!r}, but its manifest's "
                f'"provides" lists {listed}. Add "{name}" to "provides" in manifest.json.'
            )

    @overload
    def get(self, key: ServiceKey[T]) -> T: ...
    @overload
    def get(self, key: type[T]) -> T: ...
    def get(self, key: KeyLike[T]) -> T:
        """The service under `key`; raises ServiceNotFoundError or PermissionDeniedError."""
        name = key_name(key)
        if self._registry.provider_of(name) != self._name:
            self._permissions.check_use_service(name)
        if not self._registry.has(key):
            raise ServiceNotFoundError(name, self._name, self._hint(name, self._name))
        return self._resolve(key, name)

    def _resolve(self, key: KeyLike[T], name: str) -> T:
        if not self._registry.is_scoped(name):
            return self._registry.get(key, requester=self._name)
        # Keyed by the provider's registration: a restarted provider makes a fresh instance.
        registration = self._registry.registration(name)
        cached = self._scoped.get(name)
        if cached is None or cached[0] is not registration:
            instance = self._registry.get(key, requester=self._name)
            cached = self._scoped[name] = (registration, instance)
            release = self._registry.release_of(name)
            if release is not None:
                self._ownership.add_cleanup(lambda: release(instance))
        return cast(T, cached[1])

    def get_optional(self, key: KeyLike[T]) -> T | None:
        """The service under `key`, or None when no active plugin provides it."""
        name = key_name(key)
        self._permissions.check_use_service(name)
        if not self._registry.has(key):
            return None
        return self._resolve(key, name)

    def has(self, key: KeyLike[Any]) -> bool:
        """Whether an active plugin provides `key`."""
        return self._registry.has(key)


class PluginTasks:
    """Background tasks owned by the plugin: started when it activates, cancelled on stop."""

    __slots__ = ("_logger", "_name", "_on_crash", "_ownership")

    def __init__(
        self,
        name: str,
        ownership: Ownership,
        logger: logging.Logger,
        on_crash: Callable[[BaseException], None],
    ) -> None:
        self._name, self._ownership, self._logger = name, ownership, logger
        self._on_crash = on_crash

    def spawn(
        self, run: Callable[[], Coroutine[Any, Any, object]], *, name: str | None = None
    ) -> Callable[[], None]:
        """Run `run()` in the background while the plugin is active; returns a canceller."""
        task_name = f"{self._name}:{name or getattr(run, '__name__', 'task')}"
        logger, on_crash = self._logger, self._on_crash

        async def guarded() -> None:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.exception("Background task %s crashed", task_name)
                on_crash(exc)

        def activate() -> Revoke:
            task = asyncio.get_running_loop().create_task(guarded(), name=task_name)

            async def cancel() -> None:
                if not task.done():
                    task.cancel()
                await asyncio.wait([task])

            return cancel

        return self._ownership.register("tasks", activate)


class PluginContext(Generic[ConfigT]):
    """Everything a plugin may touch, scoped to that plugin."""

    def __init__(
        self,
        *,
        name: str,
        manifest: Manifest,
        config: ConfigT,
        events: PluginEvents,
        services: PluginServices,
        tasks: PluginTasks,
        ownership: Ownership,
        permissions: Permissions,
        logger: logging.Logger,
        data_dir: Path,
        environment: str,
        facets: dict[str, FacetFactory],
    ) -> None:
        self.name: Final = name
        self.manifest: Final = manifest
        self.config: ConfigT = config
        self.events: Final = events
        self.services: Final = services
        self.tasks: Final = tasks
        self.logger: Final = logger
        self.environment: Final = environment
        self.permissions: Final = permissions
        self._data_dir = data_dir
        self._ownership = ownership
        self._facet_factories = facets
        self._facets: dict[str, Facet] = {}

    @property
    def is_production(self) -> bool:
        """Whether the application runs with `app.environment: production`."""
        return self.environment == "production"

    @property
    def data_dir(self) -> Path:
        """A directory for this plugin's files (`<data_dir>/plugins/<name>`), created on use."""
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return self._data_dir

    def facet(self, key: FacetKey[T]) -> T:
        """The plugin's view of an extension registered with the kernel (such as HTTP)."""
        facet = self._facets.get(key.name)
        if facet is None:
            factory = self._facet_factories.get(key.name)
            if factory is None:
                raise NexusError(
                    f"Plugin {self.name!r} uses ctx.{key.name}, but no {key.name!r} extension "
                    f"is installed in this kernel. Run the plugin inside the application "
                    f"(`nexus run`, or nexus.http.create_app) rather than a bare Kernel."
                )
            facet = factory(self)
            self._facets[key.name] = facet
            self._ownership.register("ingress", _facet_activator(facet))
        return facet  # type: ignore[return-value]

    @property
    def http(self) -> HttpFacet:
        """Routes and middleware of this plugin, served under /api/<name>."""
        return self.facet(HTTP)

    def on_cleanup(self, callback: Callable[[], Awaitable[object] | object]) -> None:
        """Call `callback` when the plugin stops (after teardown), or if its setup fails.

        `teardown` runs only after a successful setup; register a cleanup as soon as setup
        acquires something that must be released either way.
        """
        self._ownership.add_cleanup(callback)


def _facet_activator(facet: Facet) -> Callable[[], Revoke]:
    def activate() -> Revoke:
        facet.activate()
        return facet.revoke

    return activate

"""`ctx.http`: a plugin's routes and middleware, owned by the platform and revoked on stop."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter

from nexus.errors import NexusError
from nexus.http.caches import forget_framework_caches
from nexus.http.routing import PluginDispatcher, RequestObserver, build_plugin_app
from nexus.http.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from nexus.kernel.context import PluginContext

#: How long a stopping plugin's in-flight requests may run before it is torn down anyway.
DRAIN_TIMEOUT = 10.0

#: Root paths the platform itself serves; plugins cannot take them with `at=`.
RESERVED_ROOTS = frozenset({"api", "livez", "readyz", "docs", "redoc", "openapi.json"})


class _Forward:
    """The `app` a plugin middleware wraps: re-pointed when the layers around it change."""

    __slots__ = ("target",)

    def __init__(self, target: ASGIApp) -> None:
        self.target = target

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.target(scope, receive, send)


class _Layer:
    """One plugin middleware, built once around its own forwarder."""

    __slots__ = ("app", "forward", "owner", "position", "repointable")

    def __init__(self, position: int, owner: str, factory: Any, options: dict[str, Any]) -> None:
        self.position, self.owner = position, owner
        self.forward = _Forward(_unwrapped)
        self.app: ASGIApp = factory(self.forward, **options)
        # Most middleware keep what they wrap in `self.app`: re-pointing that attribute saves
        # a request the forwarder's call. The forwarder is re-pointed too, for any other copy.
        self.repointable = getattr(self.app, "app", None) is self.forward

    def point_at(self, following: ASGIApp) -> None:
        self.forward.target = following
        if self.repointable:
            try:
                self.app.app = following  # type: ignore[attr-defined]
            except AttributeError:  # a read-only attribute: keep going through the forwarder
                self.repointable = False


async def _unwrapped(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("PluginMiddlewareSlot.wrap() was never called")


class PluginMiddlewareSlot:
    """Middleware contributed by plugins, re-chained whenever one is added or removed.

    `app.add_middleware()` cannot change a running app, so plugins' middleware lives here, in
    a list the platform owns; a request pays one call when no plugin adds any. Each layer is
    built once, so its state survives other plugins' changes.
    """

    def __init__(self, app: ASGIApp | None = None) -> None:
        self._inner: ASGIApp = app if app is not None else _unwrapped
        self._layers: list[_Layer] = []
        self._composed: ASGIApp = self._inner
        self._outer: Any = None

    def attach(self, entry: ASGIApp) -> None:
        """Find the middleware in `entry`'s chain whose `app` is this slot, and point it at
        the slot's layers directly from now on: a request then pays no call for the slot."""
        layer: Any = entry
        for _ in range(64):  # a chain of middleware, each keeping the next in `app`
            following: Any
            if isinstance(layer, PluginMiddlewareSlot):
                following = layer._composed
            else:
                following = getattr(layer, "app", None)
            if following is self:
                self._outer = layer
                layer.app = self._composed
                return
            if following is None:
                return
            layer = following

    def wrap(self, app: ASGIApp) -> PluginMiddlewareSlot:
        """Put the slot in front of `app` (for slots placed inside a middleware stack)."""
        self._inner = app
        self._compose()
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._composed(scope, receive, send)

    def add(
        self, owner: str, factory: Any, position: int, options: dict[str, Any]
    ) -> Callable[[], None]:
        """Insert a layer (lower positions wrap outermost); returns a callable removing it."""
        layer = _Layer(position, owner, factory, options)
        self._layers.append(layer)
        self._compose()

        def remove() -> None:
            if any(existing is layer for existing in self._layers):
                self._layers = [existing for existing in self._layers if existing is not layer]
                self._compose()

        return remove

    def _compose(self) -> None:
        # Stable sort: equal (position, owner) keep the order they were added in.
        ordered = sorted(self._layers, key=lambda layer: (layer.position, layer.owner))
        following = self._inner
        for layer in reversed(ordered):
            layer.point_at(following)
            following = layer.app
        self._composed = following
        if self._outer is not None:
            self._outer.app = following


class PluginHttp:
    """The HTTP facet of one plugin: routers and middleware staged, then served together."""

    def __init__(
        self,
        ctx: PluginContext[Any],
        dispatcher: PluginDispatcher,
        slots: dict[str, PluginMiddlewareSlot],
        *,
        debug: bool,
    ) -> None:
        self._ctx, self._dispatcher, self._slots, self._debug = ctx, dispatcher, slots, debug
        self._routers: list[tuple[APIRouter, str, str | None]] = []
        self._layers: list[tuple[Any, int, str, dict[str, Any]]] = []
        self._observers: list[RequestObserver] = []
        self._removers: list[Callable[[], None]] = []
        self._is_active = False

    def include_router(self, router: Any, *, prefix: str = "", at: str | None = None) -> None:
        """Serve a FastAPI APIRouter under /api/<plugin><prefix>.

        `at="/admin"` serves it under a root path instead; the manifest must grant
        `http:mount:admin`, and only one active plugin may serve a root path.
        """
        if not isinstance(router, APIRouter):
            raise NexusError(
                f"Plugin {self._ctx.name!r}: ctx.http.include_router() takes a fastapi.APIRouter, "
                f"got {type(router).__name__}."
            )
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise NexusError(
                f"Plugin {self._ctx.name!r}: router prefix {prefix!r} must start with '/' and not "
                f"end with one, e.g. '/users'."
            )
        if at is not None:
            segment = at[1:] if at.startswith("/") else ""
            if not segment or "/" in segment or segment in RESERVED_ROOTS:
                reserved = ", ".join(f"/{r}" for r in sorted(RESERVED_ROOTS))
                raise NexusError(
                    f"Plugin {self._ctx.name!r}: at={at!r} must be one path segment such as "
                    f"'/admin', and not one the platform serves ({reserved})."
                )
            self._ctx.permissions.check_mount(segment)
        self._routers.append((router, prefix, at))
        if self._is_active:
            self._mount()

    def add_middleware(
        self,
        middleware: Any,
        *,
        position: int = 0,
        stage: Literal["authentication", "application"] = "application",
        **options: Any,
    ) -> None:
        """Add a pure ASGI middleware (`middleware(app, **options)`) to every request.

        Stage "authentication" runs before rate limiting (so it can identify the caller in
        `scope["state"]["user"]`); "application" runs right before the routes. Within a stage,
        lower positions wrap outermost; ties are ordered by plugin name.
        """
        if not callable(middleware):
            raise NexusError(
                f"Plugin {self._ctx.name!r}: middleware must be an ASGI middleware class, "
                f"got {middleware!r}."
            )
        if stage not in self._slots:
            raise NexusError(
                f"Plugin {self._ctx.name!r}: middleware stage {stage!r} is not one of "
                f"{', '.join(sorted(self._slots))}."
            )
        self._layers.append((middleware, position, stage, options))
        if self._is_active:
            self._add_layer(middleware, position, stage, options)

    def observe_requests(self, observer: RequestObserver) -> None:
        """Call `observer(plugin, scope, status, seconds, streamed)` after every HTTP request.

        For metrics and statistics: the platform captures the status and the time once for
        all observers, which costs a request far less than a middleware per plugin. `plugin`
        is the plugin that served the request, None for the platform's own paths. The call
        is synchronous, inside the request: keep it to counting. An observer that raises is
        logged and the request is unaffected. It stops when the plugin stops.
        """
        if not callable(observer):
            raise NexusError(
                f"Plugin {self._ctx.name!r}: observe_requests() takes a callable, got {observer!r}."
            )
        self._observers.append(observer)
        if self._is_active:
            self._removers.append(self._dispatcher.add_observer(observer))

    def _add_layer(
        self, middleware: Any, position: int, stage: str, options: dict[str, Any]
    ) -> None:
        self._removers.append(self._slots[stage].add(self._ctx.name, middleware, position, options))

    def _mount(self) -> None:
        if self._routers:
            app = build_plugin_app(
                self._ctx.name, self._routers, debug=self._debug, context=self._ctx
            )
            roots = tuple(at[1:] for _, _, at in self._routers if at is not None)
            self._dispatcher.mount(self._ctx.name, app, roots)

    def activate(self) -> None:
        """Serve the staged routers and middleware (the plugin became active)."""
        self._mount()
        for middleware, position, stage, options in self._layers:
            self._add_layer(middleware, position, stage, options)
        for observer in self._observers:
            self._removers.append(self._dispatcher.add_observer(observer))
        self._is_active = True

    async def revoke(self) -> None:
        """Stop serving the plugin; in-flight requests finish first (bounded)."""
        self._is_active = False
        for remove in self._removers:
            remove()
        self._removers.clear()
        self._layers.clear()
        self._observers.clear()
        had_routes = bool(self._routers)
        self._routers.clear()
        await self._dispatcher.unmount(self._ctx.name, drain_timeout=DRAIN_TIMEOUT)
        if had_routes:
            forget_framework_caches()  # else they keep this copy of the plugin's code alive

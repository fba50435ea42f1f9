"""Plugin routing: `/api/<plugin>/...` dispatched by one dict lookup to that plugin's own app.

Each plugin's routes live in a small FastAPI app of their own, built when the plugin activates
and swapped in by replacing one reference, so the number of plugins never slows a request and
routes appear and disappear atomically with the plugin.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson
from fastapi import APIRouter, FastAPI
from fastapi.datastructures import Default, DefaultPlaceholder
from fastapi.routing import APIRoute
from fastapi.utils import get_value_or_default
from starlette.responses import JSONResponse, Response

from nexus.errors import NexusError
from nexus.http.exception_handlers import install_problem_handlers
from nexus.http.problems import send_problem
from nexus.http.types import ASGIApp, Message, Receive, Scope, Send
from nexus.kernel.lifecycle import PluginState

if TYPE_CHECKING:
    from nexus.kernel.context import PluginContext

logger = logging.getLogger("nexus.http")

API_PREFIX: Final = "/api/"
_SWAPPING_OPERATIONS: Final = frozenset({"reload", "config"})
_SETTLED: Final = frozenset(
    {PluginState.ACTIVE, PluginState.FAILED, PluginState.BLOCKED, PluginState.DISABLED}
)


class RequestObserver(Protocol):
    """Told about every HTTP request once its response is finished (see `observe_requests`)."""

    def __call__(
        self, plugin: str | None, scope: Scope, status: int, seconds: float, streamed: bool
    ) -> None:
        """`plugin` served the request (None: the platform: /livez, /readyz, unknown paths);
        `status` is what the client got (500 if the app failed before answering); `seconds`
        runs from routing to the response's end; `streamed` says the body came in several
        parts (server-sent events, streaming responses)."""


class _Mounted:
    """One plugin's app and the requests it is serving."""

    __slots__ = ("app", "drained", "inflight")

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.inflight = 0
        self.drained: asyncio.Event | None = None


class PluginDispatcher:
    """The ASGI app behind the middleware stack: plugin apps by name, the platform app else."""

    def __init__(self, platform: ASGIApp, *, swap_timeout: float = 10.0) -> None:
        self.platform = platform
        self.swap_timeout = swap_timeout
        self._mounted: dict[str, _Mounted] = {}
        self._roots: dict[str, str] = {}  # first path segment -> plugin serving /<segment>
        self._gates: dict[str, asyncio.Event] = {}
        self._observers: tuple[RequestObserver, ...] = ()
        self.on_change: Callable[[], None] = lambda: None

    def apps(self) -> dict[str, FastAPI]:
        """The mounted plugin apps by plugin name."""
        return {name: mounted.app for name, mounted in self._mounted.items()}

    def roots(self) -> dict[str, str]:
        """Root path segments served by plugins (`/admin` -> "admin" plugin), by segment."""
        return dict(self._roots)

    def add_observer(self, observer: RequestObserver) -> Callable[[], None]:
        """Call `observer` after every HTTP request; returns a callable that stops it."""
        self._observers = (*self._observers, observer)

        def remove() -> None:
            self._observers = tuple(o for o in self._observers if o is not observer)

        return remove

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        observers = self._observers
        if observers and scope["type"] == "http":
            await self._observed(observers, scope, receive, send)
        else:
            await self._route(scope, receive, send)

    async def _observed(
        self, observers: tuple[RequestObserver, ...], scope: Scope, receive: Receive, send: Send
    ) -> None:
        # One status capture and one clock for every observer, however many there are.
        status = 500
        streamed = False

        async def send_observed(message: Message) -> None:
            nonlocal status, streamed
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message.get("more_body"):
                streamed = True
            await send(message)

        plugin = None
        start = perf_counter()
        try:
            plugin = await self._route(scope, receive, send_observed)
        finally:
            seconds = perf_counter() - start
            for observer in observers:
                try:
                    observer(plugin, scope, status, seconds, streamed)
                except Exception:  # an observer never fails the request it watched
                    logger.exception("Request observer %r failed", observer)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        """Serve the request; returns the plugin that served it (None: the platform)."""
        path: str = scope.get("path", "")
        if scope["type"] == "lifespan":
            await self.platform(scope, receive, send)
            return None
        if path.startswith(API_PREFIX):
            end = path.find("/", 5)
            name = path[5:] if end < 0 else path[5:end]
        else:
            end = path.find("/", 1)
            root = self._roots.get(path[1:] if end < 0 else path[1:end]) if self._roots else None
            if root is None:
                await self.platform(scope, receive, send)
                return None
            name = root
        mounted = self._mounted.get(name)
        if mounted is None:
            mounted = await self._wait_for_swap(name)
            if mounted is None:
                if name in self._gates:
                    await send_problem(
                        send,
                        503,
                        detail=f"Plugin {name!r} is being reloaded; retry shortly.",
                        headers=[(b"retry-after", b"1")],
                    )
                else:
                    await send_problem(send, 404, detail=f"No plugin serves {path!r}.")
                return None
        mounted.inflight += 1
        try:
            await mounted.app(scope, receive, send)
        finally:
            mounted.inflight -= 1
            if mounted.drained is not None and mounted.inflight == 0:
                mounted.drained.set()
        return name

    async def _wait_for_swap(self, name: str) -> _Mounted | None:
        gate = self._gates.get(name)
        if gate is None:
            return None
        try:
            async with asyncio.timeout(self.swap_timeout):
                await gate.wait()
        except TimeoutError:
            return None
        return self._mounted.get(name)

    def mount(self, name: str, app: FastAPI, roots: tuple[str, ...] = ()) -> None:
        """Serve `app` for /api/<name> and /<root> for each root, replacing what served it."""
        for root in roots:
            owner = self._roots.get(root)
            if owner is not None and owner != name:
                raise NexusError(
                    f"Plugin {name!r} cannot serve /{root}: plugin {owner!r} already does. "
                    f"Only one active plugin may serve a root path."
                )
        for root in [r for r, owner in self._roots.items() if owner == name and r not in roots]:
            del self._roots[root]
        for root in roots:
            self._roots[root] = name
        self._mounted[name] = _Mounted(app)
        self.on_change()

    async def unmount(self, name: str, *, drain_timeout: float) -> None:
        """Stop routing to the plugin; wait (bounded) for its in-flight requests to finish."""
        mounted = self._mounted.pop(name, None)
        if name not in self._gates:
            # While a plugin is swapped, its root paths stay reserved so requests wait for it.
            for root in [r for r, owner in self._roots.items() if owner == name]:
                del self._roots[root]
        if mounted is None:
            return
        self.on_change()
        if mounted.inflight:
            mounted.drained = asyncio.Event()
            try:
                async with asyncio.timeout(drain_timeout):
                    await mounted.drained.wait()
            except TimeoutError:
                logger.warning(
                    "Plugin %s: %d request(s) still running after %g s; stopping it anyway",
                    name,
                    mounted.inflight,
                    drain_timeout,
                )

    def on_state(self, name: str, old: PluginState, new: PluginState, operation: str) -> None:
        """Plugin state listener: hold requests while a plugin is swapped for a new version."""
        if new is PluginState.STOPPING and operation in _SWAPPING_OPERATIONS:
            self._gates.setdefault(name, asyncio.Event())
        elif new in _SETTLED or operation not in _SWAPPING_OPERATIONS:
            gate = self._gates.pop(name, None)
            if gate is not None:
                gate.set()


_JSON_CONTAINERS: Final = (dict, list)  # a tuple: `dict | list` would be rebuilt per call


class _RenderedJSON(Response):
    """JSON that orjson rendered: the headers `Response(body, media_type=...)` would set.

    Set directly rather than derived by `Response.init_headers` on every request; only for
    statuses that carry a body and its length (see build_plugin_app).
    """

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ]


def _fast_json(call: Callable[..., Any], status_code: int) -> Callable[..., Any]:
    """Wrap an endpoint so plain dict/list results are rendered by orjson directly.

    FastAPI runs results without a response_model through `jsonable_encoder`, which costs
    far more than the request itself for larger payloads; orjson handles the same types.
    Results orjson cannot render (pydantic models, custom classes) take FastAPI's path.
    """

    def render(result: Any) -> Any:
        if isinstance(result, _JSON_CONTAINERS):
            try:
                body = orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS)
            except TypeError:
                return result
            return _RenderedJSON(body, status_code)
        return result

    if inspect.iscoroutinefunction(call):

        async def async_endpoint(**values: Any) -> Any:
            return render(await call(**values))

        return async_endpoint

    def sync_endpoint(**values: Any) -> Any:
        return render(call(**values))

    return sync_endpoint


def build_plugin_app(
    name: str,
    routers: list[tuple[APIRouter, str, str | None]],
    *,
    debug: bool,
    context: PluginContext[Any],
) -> FastAPI:
    """A FastAPI app holding one plugin's routers (under /api/<name> or their root path)."""
    app = FastAPI(debug=debug, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.nexus_context = context
    install_problem_handlers(app, debug=debug)
    for router, prefix, at in routers:
        base = at if at is not None else f"/api/{name}"
        include_flat(app, router, prefix=f"{base}{prefix}", tag=name)
    for route in _endpoints(app):
        call = route.dependant.call
        if (
            call is not None
            and route.response_field is None
            and (route.status_code or 200) >= 200
            and (route.status_code or 200) not in (204, 205, 304)
            and (
                isinstance(route.response_class, DefaultPlaceholder)
                or route.response_class is JSONResponse
            )
            and not inspect.isasyncgenfunction(call)  # streamed results
            and not inspect.isgeneratorfunction(call)
            and not _sets_response(route.dependant)
        ):
            route.dependant.call = _fast_json(call, route.status_code or 200)
    return app


def include_flat(app: FastAPI, router: APIRouter, *, prefix: str, tag: str) -> None:
    """`app.include_router(router, prefix=prefix, tags=[tag])`, with the routes copied flat.

    FastAPI >= 0.160 keeps an included router as one route of the app, which matches each
    request twice (once to find the router, again to pick its route) and adds a layer of
    scope bookkeeping to both. Each APIRoute is re-created on the app instead, with its full
    path and every option merged as include_router merges them, so it matches once. A router
    holding anything else (websockets, mounts, Starlette routes, nested routers, frontend
    routes, router-wide form limits, custom route classes with their own constructor) is
    included as it is. Lifespans and startup handlers need no copy: a plugin app never runs
    a lifespan (the platform's does; plugins use setup and teardown).
    """
    routes = _flattenable_routes(router)
    if routes is None:
        app.include_router(router, prefix=prefix, tags=[tag])
        return
    parent = app.router
    for route in routes:
        parent.add_api_route(
            prefix + route.path,
            route.endpoint,
            # A streamed route's item type is derived with its response model (from the
            # return annotation), which the constructor takes only in this form.
            response_model=Default(None)
            if route.stream_item_type is not None
            else route.response_model,
            status_code=route.status_code,
            tags=[tag, *route.tags],
            dependencies=route.dependencies,
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=route.responses,
            deprecated=route.deprecated,
            methods=route.methods,
            operation_id=route.operation_id,
            response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema,
            response_class=get_value_or_default(
                route.response_class, router.default_response_class, parent.default_response_class
            ),
            name=route.name,
            route_class_override=type(route),
            callbacks=route.callbacks,
            openapi_extra=route.openapi_extra,
            generate_unique_id_function=get_value_or_default(
                route.generate_unique_id_function,
                router.generate_unique_id_function,
                parent.generate_unique_id_function,
            ),
            strict_content_type=get_value_or_default(
                route.strict_content_type, router.strict_content_type, parent.strict_content_type
            ),
            max_body_size=_first_limit(
                route.max_body_size, router.max_body_size, parent.max_body_size
            ),
            form_limits=route.form_limits or None,
        )


def _flattenable_routes(router: APIRouter) -> list[APIRoute] | None:
    """The router's routes if each one can be re-created exactly, else None."""
    if not _keeps_included_routers():
        return None  # older FastAPI copies the routes itself
    if getattr(router, "_low_priority_routes", None) or getattr(router, "form_limits", None):
        return None
    routes = [
        route
        for route in router.routes
        if isinstance(route, APIRoute) and type(route).__init__ is APIRoute.__init__
    ]
    return routes if len(routes) == len(router.routes) else None


def _first_limit(*limits: int | None) -> int | None:
    return next((limit for limit in limits if limit is not None), None)


@functools.cache
def _keeps_included_routers() -> bool:
    """Whether this FastAPI keeps an included router as one route (>= 0.160)."""
    app, router = FastAPI(), APIRouter()
    router.add_api_route("/probe", _probe)
    app.include_router(router)
    return not isinstance(app.router.routes[-1], APIRoute)


def _probe() -> None:  # pragma: no cover - never called
    pass


def _endpoints(app: FastAPI) -> list[Any]:
    """The app's FastAPI routes, as they serve requests.

    FastAPI >= 0.160 keeps an included router as one route and serves it through per-route
    contexts built on first use; building them here also takes the dependant analysis off
    the first request after a plugin is swapped in.
    """
    found: list[Any] = []
    for route in app.router.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            found.extend(c for c in contexts() if isinstance(c.original_route, APIRoute))
        elif isinstance(route, APIRoute):
            found.append(route)
    return found


def _sets_response(dependant: Any) -> bool:
    """Whether the endpoint or a dependency takes `response: Response` to set headers."""
    return dependant.response_param_name is not None or any(
        _sets_response(sub) for sub in dependant.dependencies
    )

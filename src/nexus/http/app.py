"""The application factory: a FastAPI app whose lifespan runs the kernel and serves its plugins."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.requests import Request
from starlette.responses import Response

from nexus._version import __version__
from nexus.http.exception_handlers import install_problem_handlers
from nexus.http.facet import PluginHttp, PluginMiddlewareSlot
from nexus.http.openapi import document_problems
from nexus.http.routing import PluginDispatcher
from nexus.http.settings import HttpSettings, RateLimitSettings
from nexus.http.stack import build_middleware_stack
from nexus.http.types import ASGIApp, Receive, Scope, Send
from nexus.kernel.config import NexusConfig, load_config
from nexus.kernel.context import HTTP, PluginContext
from nexus.kernel.discovery import PluginSource
from nexus.kernel.kernel import Kernel
from nexus.kernel.lifecycle import PluginState
from nexus.kernel.plugin import Plugin

if TYPE_CHECKING:
    from nexus.redis.ratelimit import RedisRateLimitStore

logger = logging.getLogger("nexus.http")

#: Top-level config sections the HTTP layer adds to nexus.yaml.
HTTP_SECTIONS: dict[str, type[Any]] = {"http": HttpSettings}


def load_app_config(
    path: str | Path | None = None,
    *,
    environment: str | None = None,
    env: dict[str, str] | None = None,
) -> NexusConfig:
    """Load nexus.yaml with the HTTP sections validated too."""
    return load_config(path, environment=environment, env=env, sections=HTTP_SECTIONS)


class NexusApp(FastAPI):
    """A FastAPI app whose requests pass the Nexus middleware stack and plugin dispatcher."""

    kernel: Kernel
    dispatcher: PluginDispatcher
    _entry: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
        else:
            await self._entry(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """The platform's routes and every active plugin's, one tag per plugin."""
        if self.openapi_schema is None:
            apps = self.dispatcher.apps()
            routes = list(self.routes)
            for plugin_app in apps.values():
                routes.extend(plugin_app.routes)
            tags = [
                {"name": name, "description": self.kernel.plugins.status(name).description}
                for name in sorted(apps)
                if name in self.kernel.plugins
            ]
            self.openapi_schema = document_problems(
                get_openapi(
                    title=self.title, version=self.version, routes=routes, tags=tags or None
                )
            )
        return self.openapi_schema


def create_app(
    config: NexusConfig | str | Path | None = None,
    *,
    plugins: Iterable[PluginSource | Plugin] = (),
    entry_points: bool | None = None,
) -> NexusApp:
    """Build the application: its lifespan starts the kernel and stops it on shutdown."""
    if not isinstance(config, NexusConfig):
        config = load_app_config(config)
    settings = config.sections.get("http")
    if not isinstance(settings, HttpSettings):
        settings = HttpSettings()
    debug = config.environment == "development"
    kernel = Kernel(config, plugins=plugins, entry_points=entry_points)
    rate_limit_store = _rate_limit_store(settings.rate_limit)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await kernel.start()
        try:
            yield
        finally:
            await kernel.stop()
            if rate_limit_store is not None:
                await rate_limit_store.aclose()

    app = NexusApp(
        title=config.app.name,
        version=__version__,
        debug=debug,
        lifespan=lifespan,
    )
    install_problem_handlers(app, debug=debug)
    app.kernel = kernel
    app.state.kernel = kernel

    def platform(scope: Scope, receive: Receive, send: Send) -> Any:
        return FastAPI.__call__(app, scope, receive, send)

    dispatcher = PluginDispatcher(platform)
    app.dispatcher = dispatcher
    slots = {
        "application": PluginMiddlewareSlot(dispatcher),
        "authentication": PluginMiddlewareSlot(None),
    }
    dispatcher.on_change = _invalidate_openapi(app)
    kernel.plugins.add_listener(dispatcher.on_state)

    def http_facet(ctx: PluginContext[Any]) -> PluginHttp:
        return PluginHttp(ctx, dispatcher, slots, debug=debug)

    kernel.register_facet(HTTP, http_facet)
    app._entry = build_middleware_stack(
        slots["application"],
        settings,
        debug=debug,
        rate_limit_store=rate_limit_store,
        authentication=slots["authentication"].wrap,
    )
    for slot in slots.values():
        slot.attach(app._entry)
    _add_health_routes(app, kernel)
    return app


def _rate_limit_store(settings: RateLimitSettings) -> RedisRateLimitStore | None:
    """The shared store `http.rate_limit` asks for; None keeps buckets in this process."""
    if not settings.enabled or settings.store != "redis" or settings.redis_url is None:
        return None
    # Imported here: the redis extra is needed only when the configuration asks for Redis.
    from nexus.redis.ratelimit import RedisRateLimitStore

    return RedisRateLimitStore(
        settings.redis_url.get_secret_value(),
        prefix=settings.redis_prefix,
        timeout=settings.redis_timeout,
    )


def _invalidate_openapi(app: NexusApp) -> Callable[[], None]:
    def invalidate() -> None:
        app.openapi_schema = None

    return invalidate


def _add_health_routes(app: FastAPI, kernel: Kernel) -> None:
    @app.get("/livez", tags=["platform"], summary="The process is alive")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["platform"], summary="Every enabled plugin is active and healthy")
    async def readyz(request: Request) -> Response:
        health = await kernel.plugins.health()
        statuses = {status.name: status for status in kernel.plugins.statuses()}
        readiness: dict[str, str | None] = {}  # plugin -> None if ready, else why not

        def why_not(name: str) -> str | None:
            # A plugin is ready when it is active, healthy, and so is everything it requires.
            if name in readiness:
                return readiness[name]
            readiness[name] = "dependency cycle"
            status, check = statuses[name], health[name]
            reason: str | None = None
            if status.state is not PluginState.ACTIVE:
                reason = status.reason or f"plugin is {status.state.value}"
            elif not check.ok:
                reason = check.detail or "health check failed"
            else:
                for dep in sorted(status.requires):
                    if dep in statuses and why_not(dep) is not None:
                        reason = f"requires {dep!r}, which is not ready"
                        break
            readiness[name] = reason
            return reason

        plugins: dict[str, Any] = {}
        events = await kernel.bus.health()  # the event transport: Redis may be unreachable
        ready = kernel.is_started and events.ok
        for name, status in statuses.items():
            reason = why_not(name)
            plugins[name] = {
                "state": status.state.value,
                "healthy": health[name].ok,
                "ready": reason is None,
                "detail": reason or health[name].detail,
            }
            if status.enabled and reason is not None:
                ready = False
        body = {
            "status": "ready" if ready else "not ready",
            "events": {"healthy": events.ok, "detail": events.detail},
            "plugins": plugins,
        }
        return _json(body, 200 if ready else 503)


def _json(body: dict[str, Any], status: int) -> Response:
    import orjson

    return Response(orjson.dumps(body), status_code=status, media_type="application/json")

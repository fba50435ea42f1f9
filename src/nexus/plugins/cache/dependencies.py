"""FastAPI dependency: the cache of the plugin whose route is handling the request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from nexus.errors import ServiceNotFoundError
from nexus.http.problems import ServiceUnavailableError
from nexus.kernel.context import PluginContext
from nexus.plugins.cache.protocol import CACHE, Cache


def _route_cache(request: Request) -> Cache:
    # The route's own plugin asks, so the namespace is its own and its manifest must grant
    # services:use:cache.
    ctx: PluginContext[Any] = request.app.state.nexus_context
    try:
        return ctx.services.get(CACHE)
    except ServiceNotFoundError:
        raise ServiceUnavailableError("The cache is not available.", retry_after=5) from None


#: `cache: PluginCache` in a route handler: the cache namespace of the route's plugin.
PluginCache = Annotated[Cache, Depends(_route_cache)]

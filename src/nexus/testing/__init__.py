"""Helpers for testing plugins: real kernels and apps configured in code.

kernel = create_test_kernel(plugins=[MyPlugin()], config={"plugins": {"my": {"x": 1}}})
async with kernel: ...

app = create_test_app(plugin_paths=["./plugins"])
async with serve(app) as client:
    response = await client.get("/api/my/items")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus.kernel.config import NexusConfig, load_config
from nexus.kernel.discovery import PluginSource
from nexus.kernel.kernel import Kernel
from nexus.kernel.plugin import Plugin

if TYPE_CHECKING:
    import httpx

    from nexus.http.app import NexusApp

__all__ = ["build_config", "create_test_app", "create_test_kernel", "serve"]


def build_config(
    config: Mapping[str, Any] | None = None,
    *,
    plugin_paths: Sequence[str | Path] = (),
    http: bool = False,
) -> NexusConfig:
    """A configuration from built-in defaults plus `config`, ignoring the process environment."""
    overrides: dict[str, Any] = {"plugin_paths": [str(p) for p in plugin_paths]}
    overrides.update(config or {})
    sections: dict[str, Any] | None = None
    if http:
        from nexus.http.app import HTTP_SECTIONS

        sections = HTTP_SECTIONS
    return load_config(None, env={}, overrides=overrides, sections=sections)


def create_test_kernel(
    *,
    plugins: Iterable[PluginSource | Plugin] = (),
    config: Mapping[str, Any] | None = None,
    plugin_paths: Sequence[str | Path] = (),
    entry_points: bool = False,
) -> Kernel:
    """A Kernel with inline `plugins` (instances with a `manifest`) and/or plugin directories."""
    return Kernel(
        build_config(config, plugin_paths=plugin_paths),
        plugins=plugins,
        entry_points=entry_points,
    )


def create_test_app(
    *,
    plugins: Iterable[PluginSource | Plugin] = (),
    config: Mapping[str, Any] | None = None,
    plugin_paths: Sequence[str | Path] = (),
    entry_points: bool = False,
) -> NexusApp:
    """The full HTTP application with the given plugins and configuration."""
    from nexus.http.app import create_app

    return create_app(
        build_config(config, plugin_paths=plugin_paths, http=True),
        plugins=plugins,
        entry_points=entry_points,
    )


@asynccontextmanager
async def serve(
    app: NexusApp, *, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield an httpx client that talks to it in-process."""
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client

"""Real kernels and apps configured in code, with fakes standing in for services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from nexus._version import __version__
from nexus.errors import NexusError
from nexus.kernel.config import NexusConfig, load_config
from nexus.kernel.context import PluginContext
from nexus.kernel.discovery import PluginSource, discover
from nexus.kernel.kernel import Kernel, inline_plugin
from nexus.kernel.plugin import Plugin
from nexus.kernel.services import ServiceKey, ServiceRegistry, key_name

if TYPE_CHECKING:
    import httpx

    from nexus.http.app import NexusApp

#: The inline plugin that `services=` fakes are listed under.
OVERRIDES: Final = "test_overrides"

#: Fakes by the key they stand in for: `{DATABASE: FakeDatabase()}`.
ServiceFakes = Mapping[ServiceKey[Any] | type[Any], object]


class AppFactory(Protocol):
    """The app builder the `nexus_app_factory` fixture gives a test (for type hints)."""

    def __call__(
        self,
        *,
        plugins: Iterable[PluginSource | Plugin] = (),
        config: Mapping[str, Any] | None = None,
        plugin_paths: Sequence[str | Path] | None = None,
        services: ServiceFakes | None = None,
        entry_points: bool | None = None,
    ) -> NexusApp:
        """Build an app like create_test_app (defaults: the nexus_* fixtures, kernel config)."""
        ...


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
    services: ServiceFakes | None = None,
) -> Kernel:
    """A Kernel with inline `plugins` (instances with a `manifest`) and/or plugin directories.

    `services` maps service keys to fakes; see `create_test_app`.
    """
    built = build_config(config, plugin_paths=plugin_paths)
    sources = _with_overrides(plugins, services)
    if services:
        _refuse_real_providers(built, sources, entry_points, services)
    kernel = Kernel(built, plugins=sources, entry_points=entry_points)
    _provide_fakes(kernel.services, services)
    return kernel


def create_test_app(
    *,
    plugins: Iterable[PluginSource | Plugin] = (),
    config: Mapping[str, Any] | None = None,
    plugin_paths: Sequence[str | Path] = (),
    entry_points: bool = False,
    services: ServiceFakes | None = None,
) -> NexusApp:
    """The full HTTP application with the given plugins and configuration.

    `services={KEY: fake}` provides each fake under its key from the moment the kernel starts,
    before any plugin's setup, so start order does not matter. The fakes are listed as
    provided by the inline plugin `test_overrides`. The real provider must not run: leave it
    out, or disable it with `config={"plugins": {"<name>": {"enabled": False}}}`; otherwise
    this raises NexusError naming it. A plugin that `requires` the real provider by name
    needs a stand-in of that name instead: `plugins=[fake_plugin("database", {DATABASE: fake})]`.
    """
    from nexus.http.app import create_app

    built = build_config(config, plugin_paths=plugin_paths, http=True)
    sources = _with_overrides(plugins, services)
    if services:
        _refuse_real_providers(built, sources, entry_points, services)
    app = create_app(built, plugins=sources, entry_points=entry_points)
    _provide_fakes(app.kernel.services, services)
    return app


def fake_plugin(
    name: str,
    services: ServiceFakes,
    *,
    version: str = "1.0.0",
    description: str = "",
) -> PluginSource:
    """An inline plugin called `name` that provides `services`: a stand-in for a real provider.

    Plugins that `requires` the real one start after it, as they would after the real
    provider. Its version must satisfy their specifiers (`version="1.4.0"`), and the real
    plugin must not be installed in the same kernel (keep `entry_points=False`).
    """
    fakes = dict(services)
    manifest = {
        "name": name,
        "version": version,
        "description": description or f"Fakes of {', '.join(_names(fakes))}, provided by a test",
        "provides": _names(fakes),
    }
    return inline_plugin(manifest, lambda: _FakeProvider(fakes))


class _FakeProvider(Plugin):
    def __init__(self, fakes: dict[ServiceKey[Any] | type[Any], object]) -> None:
        self.fakes = fakes

    async def setup(self, ctx: PluginContext[Any]) -> None:
        for key, fake in self.fakes.items():
            ctx.services.provide(key, fake)


def _names(services: ServiceFakes) -> list[str]:
    return sorted(key_name(key) for key in services)


def _with_overrides(
    plugins: Iterable[PluginSource | Plugin], services: ServiceFakes | None
) -> list[PluginSource | Plugin]:
    sources = list(plugins)
    if services:
        # Listed only: the fakes themselves are registered before any plugin starts.
        manifest = {
            "name": OVERRIDES,
            "version": __version__,
            "description": f"Fakes of {', '.join(_names(services))}, provided by the test",
            "provides": _names(services),
        }
        sources.append(inline_plugin(manifest, Plugin))
    return sources


def _provide_fakes(registry: ServiceRegistry, services: ServiceFakes | None) -> None:
    for key, fake in (services or {}).items():
        registry.provide(key, fake, provider=OVERRIDES)


def _refuse_real_providers(
    config: NexusConfig,
    sources: Iterable[PluginSource | Plugin],
    entry_points: bool,
    services: ServiceFakes,
) -> None:
    inline = [source for source in sources if isinstance(source, PluginSource)]
    found = discover(config.plugin_paths, entry_points=entry_points, inline=inline)
    overridden = set(_names(services))
    clashes = [
        (key, name, source.origin)
        for name, source in sorted(found.sources.items())
        if name != OVERRIDES and config.plugin_enabled(name)
        for key in sorted(overridden & set(source.manifest.provides))
    ]
    if clashes:
        listed = "; ".join(
            f"{key!r} is also provided by plugin {name!r} ({origin})"
            for key, name, origin in clashes
        )
        disable = f"{{'plugins': {{{clashes[0][1]!r}: {{'enabled': False}}}}}}"
        raise NexusError(
            f"The services= fakes clash with real providers: {listed}. Leave the real provider "
            f"out, or disable it: config={disable}."
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

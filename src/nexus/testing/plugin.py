"""The Nexus pytest plugin, installed with Nexus (pytest11 entry point `nexus`).

Fixtures; override the first three in your conftest.py:

    nexus_config        the app's configuration, a dict (default: empty); the marker
                        `@pytest.mark.nexus_config(plugins={"notes": {"limit": 1}})` adds to it
    nexus_plugins       inline plugins to add: instances with a `manifest`, or inline_plugin(...)
    nexus_plugin_paths  plugin directories (default: each --nexus-plugins DIR, else
                        <rootdir>/plugins when it exists)
    nexus_app           the app built from those three (not started)
    nexus_client        an httpx.AsyncClient talking to nexus_app, which runs for the test
    nexus_kernel        the running kernel of nexus_app
    event_recorder      an EventRecorder of nexus_app's events, from before it starts
    nexus_app_factory   builds more apps: factory(plugins=, config=, plugin_paths=, services=,
                        entry_points=); they are stopped and their plugin code forgotten after

Each app gets a data_dir of its own under the test's tmp_path, and installed plugins (the
`nexus.plugins` entry points, built-ins included) only with `kernel: {entry_points: true}`.
The async fixtures need pytest-asyncio; they work in its auto mode and in strict mode (where
tests carry `@pytest.mark.asyncio`).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

    from nexus.http.app import NexusApp
    from nexus.kernel.discovery import PluginSource
    from nexus.kernel.kernel import Kernel
    from nexus.kernel.plugin import Plugin
    from nexus.testing.factories import AppFactory, ServiceFakes
    from nexus.testing.recorder import EventRecorder


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --nexus-plugins."""
    parser.getgroup("nexus").addoption(
        "--nexus-plugins",
        action="append",
        metavar="DIR",
        default=[],
        help="Plugin directory for the nexus fixtures (repeatable; default: <rootdir>/plugins).",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the nexus_config marker."""
    config.addinivalue_line(
        "markers",
        "nexus_config(**config): configuration merged into the nexus_config fixture for this "
        "test (nexus pytest plugin)",
    )


def _async_fixture(function: Callable[..., Any]) -> Any:
    """An async fixture for pytest-asyncio (auto and strict mode), or one explaining its absence."""
    try:
        import pytest_asyncio
    except ImportError:
        name = function.__name__

        @pytest.fixture(name=name)
        def missing() -> None:
            pytest.fail(
                f"The {name} fixture is async and needs pytest-asyncio: pip install pytest-asyncio",
                pytrace=False,
            )

        return missing
    return pytest_asyncio.fixture(function)


@pytest.fixture
def nexus_config() -> dict[str, Any]:
    """The configuration of the app under test; override it in conftest.py."""
    return {}


@pytest.fixture
def nexus_plugins() -> list[Any]:
    """Inline plugins added to the app under test; override it in conftest.py."""
    return []


@pytest.fixture
def nexus_plugin_paths(pytestconfig: pytest.Config) -> list[Path]:
    """Plugin directories of the app under test: --nexus-plugins, else <rootdir>/plugins."""
    given: list[str] = pytestconfig.getoption("nexus_plugins")
    if given:
        return [(pytestconfig.invocation_params.dir / path).resolve() for path in given]
    default = pytestconfig.rootpath / "plugins"
    return [default] if default.is_dir() else []


@_async_fixture
async def nexus_app_factory(
    nexus_plugin_paths: list[Path], tmp_path: Path
) -> AsyncIterator[AppFactory]:
    """A function that builds apps like create_test_app; they are stopped after the test."""
    from nexus.testing.factories import create_test_app

    apps: list[NexusApp] = []

    def factory(
        *,
        plugins: Iterable[PluginSource | Plugin] = (),
        config: Mapping[str, Any] | None = None,
        plugin_paths: Sequence[str | Path] | None = None,
        services: ServiceFakes | None = None,
        entry_points: bool | None = None,
    ) -> NexusApp:
        suffix = f"-{len(apps) + 1}" if apps else ""
        merged = _merge({"data_dir": str(tmp_path / f"nexus-data{suffix}")}, config or {})
        if entry_points is None:
            entry_points = bool(merged.get("kernel", {}).get("entry_points", False))
        app = create_test_app(
            plugins=plugins,
            config=merged,
            plugin_paths=nexus_plugin_paths if plugin_paths is None else plugin_paths,
            services=services,
            entry_points=entry_points,
        )
        apps.append(app)
        return app

    yield factory
    for app in apps:
        await app.kernel.stop()
        _forget_directory_plugins(app.kernel)


@pytest.fixture
def nexus_app(
    request: pytest.FixtureRequest,
    nexus_app_factory: AppFactory,
    nexus_config: dict[str, Any],
    nexus_plugins: list[Any],
) -> NexusApp:
    """The app under test, built from nexus_config (+ markers), nexus_plugins and paths."""
    config = dict(nexus_config)
    # Closest marker wins: apply the module's, then the class's, then the test's.
    for marker in reversed(list(request.node.iter_markers("nexus_config"))):
        for mapping in marker.args:
            if not isinstance(mapping, Mapping):
                pytest.fail(
                    f"@pytest.mark.nexus_config takes keyword arguments or dicts, got {mapping!r}",
                    pytrace=False,
                )
            config = _merge(config, mapping)
        config = _merge(config, marker.kwargs)
    return nexus_app_factory(plugins=nexus_plugins, config=config)


@_async_fixture
async def nexus_client(
    request: pytest.FixtureRequest, nexus_app: NexusApp
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of the app under test; the app runs (lifespan) during the test."""
    from nexus.testing.factories import serve

    if "event_recorder" in request.fixturenames:
        request.getfixturevalue("event_recorder")  # subscribe before startup events
    async with serve(nexus_app) as client:
        yield client


@pytest.fixture
def nexus_kernel(nexus_client: httpx.AsyncClient, nexus_app: NexusApp) -> Kernel:
    """The running kernel of the app under test."""
    return nexus_app.kernel


@pytest.fixture
def event_recorder(nexus_app: NexusApp) -> Iterator[EventRecorder]:
    """Every event published in the app under test, recorded from before it starts."""
    from nexus.testing.recorder import EventRecorder

    recorder = EventRecorder(nexus_app)
    yield recorder
    recorder.close()


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


def _forget_directory_plugins(kernel: Kernel) -> None:
    """Drop the plugin code imported from directories, so the next test imports it afresh."""
    from nexus.kernel import loader

    for status in kernel.plugins.statuses():
        if f"{loader.PACKAGE}.{status.name}" in sys.modules:
            loader.release_directory(status.name)

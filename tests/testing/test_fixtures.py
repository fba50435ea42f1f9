"""The pytest plugin's fixtures, used in this very session; and nexus.testing's public names."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import nexus.testing
from nexus.http.app import NexusApp
from nexus.testing import AppFactory
from tests.conftest import PluginWriter


def test_public_names_are_pinned() -> None:
    """`nexus.testing.__all__` is sorted and exactly the helpers plugin authors rely on."""
    assert nexus.testing.__all__ == [
        "AppFactory",
        "EventRecorder",
        "FakeClock",
        "assert_unloads_cleanly",
        "build_config",
        "create_test_app",
        "create_test_kernel",
        "fake_plugin",
        "serve",
    ]
    for name in nexus.testing.__all__:
        assert hasattr(nexus.testing, name), name


@pytest.fixture
def checked_after_teardown() -> Iterator[list[NexusApp]]:
    """Apps that must be stopped, with their plugin code forgotten, once the test is over.

    Requested before nexus_app_factory, so this teardown runs after the factory's.
    """
    apps: list[NexusApp] = []
    yield apps
    assert [app.kernel.is_started for app in apps] == [False] * len(apps)
    assert "nexus_plugins.probe" not in sys.modules


async def test_factory_apps_are_stopped_and_forgotten(
    checked_after_teardown: list[NexusApp],
    nexus_app_factory: AppFactory,
    plugins: PluginWriter,
    tmp_path: Path,
) -> None:
    """Apps the factory built are stopped after the test, each had a data_dir of its own."""
    plugins.write("probe")
    first = nexus_app_factory(plugin_paths=[plugins.root])
    second = nexus_app_factory(plugin_paths=[plugins.root], config={"app": {"name": "Second"}})
    await first.kernel.start()  # left running on purpose
    assert "nexus_plugins.probe" in sys.modules
    assert first.kernel.config.data_dir == tmp_path / "nexus-data"
    assert second.kernel.config.data_dir == tmp_path / "nexus-data-2"
    assert second.kernel.config.app.name == "Second"
    checked_after_teardown.extend([first, second])


def test_entry_points_follow_the_kernel_section(nexus_app_factory: AppFactory) -> None:
    """Installed plugins (the built-ins) are discovered only when the config asks for them."""
    without = nexus_app_factory(plugin_paths=[])
    without.kernel.plugins.discover()
    assert without.kernel.plugins.statuses() == []
    with_them = nexus_app_factory(plugin_paths=[], config={"kernel": {"entry_points": True}})
    with_them.kernel.plugins.discover()
    assert "auth" in {status.name for status in with_them.kernel.plugins.statuses()}

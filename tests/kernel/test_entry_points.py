"""Entry-point discovery from a real distribution installed with pip."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from nexus import Kernel, PluginState
from nexus.kernel.config import NexusConfig
from nexus.kernel.discovery import discover

PLUGIN = """
from nexus import Plugin, ServiceKey

class Hello(Plugin):
    async def setup(self, ctx):
        ctx.services.provide(ServiceKey("hello"), "hello from a distribution")
"""


@pytest.fixture(scope="session")
def installed_distribution(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build and pip-install a tiny plugin distribution into its own site directory."""
    source = tmp_path_factory.mktemp("dist-src")
    package = source / "nexus_hello"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(PLUGIN)
    manifest = {"name": "hello", "version": "0.2.0", "entry": "plugin:Hello", "provides": ["hello"]}
    (package / "manifest.json").write_text(json.dumps(manifest))
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "nexus-hello"
            version = "0.2.0"

            [project.entry-points."nexus.plugins"]
            hello = "nexus_hello.plugin:Hello"

            [tool.setuptools]
            packages = ["nexus_hello"]

            [tool.setuptools.package-data]
            nexus_hello = ["manifest.json"]
            """
        )
    )
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return target


async def test_entry_point_plugin_is_discovered_and_started(
    installed_distribution: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_config: Callable[..., NexusConfig],
) -> None:
    """A plugin registered in the nexus.plugins group of an installed distribution runs."""
    monkeypatch.syspath_prepend(str(installed_distribution))
    found = discover([], entry_points=True, only="hello")
    source = found.sources["hello"]
    assert source.kind == "entry_point"
    assert source.origin == "entry point 'hello' of nexus-hello"
    assert "nexus_hello" not in sys.modules  # discovery read the manifest without importing
    from nexus import ServiceKey

    async with Kernel(make_config(), entry_points=True) as kernel:
        assert kernel.plugins.status("hello").state is PluginState.ACTIVE
        assert kernel.plugins.status("hello").version == "0.2.0"
        assert kernel.services.get(ServiceKey[str]("hello")) == "hello from a distribution"
    for name in [m for m in sys.modules if m.startswith("nexus_hello")]:
        del sys.modules[name]


async def test_entry_point_clashing_with_directory_plugin(
    installed_distribution: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_config: Callable[..., NexusConfig],
    tmp_path: Path,
) -> None:
    """A directory plugin and an entry point with the same name are both named in the error."""
    from tests.conftest import PluginWriter

    monkeypatch.syspath_prepend(str(installed_distribution))
    PluginWriter(tmp_path / "plugins").write("hello")
    async with Kernel(make_config(), entry_points=True) as kernel:
        failure = kernel.plugins.status("hello").failure
        assert failure is not None
        assert (
            "is provided twice: by plugins/hello and by entry point 'hello' of nexus-hello"
            in failure.reason.replace(str(tmp_path) + "/", "")
        )

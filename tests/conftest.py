"""Shared fixtures: plugin directories written to tmp_path, configs loaded from real files."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nexus.kernel.config import NexusConfig, load_config


class PluginWriter:
    """Writes real plugin packages (`<root>/<name>/manifest.json` + code) for tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def write(
        self,
        name: str,
        code: str = "",
        *,
        version: str = "1.0.0",
        entry: str = "plugin:Main",
        module: str = "plugin",
        **manifest: Any,
    ) -> Path:
        directory = self.root / name
        directory.mkdir(exist_ok=True)
        body = {"name": name, "version": version, "entry": entry, **manifest}
        (directory / "manifest.json").write_text(json.dumps(body, indent=2))
        source = code or "from nexus import Plugin\n\nclass Main(Plugin):\n    pass\n"
        (directory / f"{module}.py").write_text(textwrap.dedent(source))
        return directory


@pytest.fixture
def plugins(tmp_path: Path) -> PluginWriter:
    """A plugin directory under tmp_path to write test plugins into."""
    return PluginWriter(tmp_path / "plugins")


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., NexusConfig]:
    """Write nexus.yaml (plugin_paths: [plugins]) with extra sections and load it."""

    def make(**sections: Any) -> NexusConfig:
        document: dict[str, Any] = {"plugin_paths": ["plugins"], "data_dir": "data", **sections}
        document["kernel"] = {"entry_points": False, **document.get("kernel", {})}
        path = tmp_path / "nexus.yaml"
        path.write_text(yaml.safe_dump(document))
        return load_config(path, env={})

    return make


def builtin_plugin(cls: type[Any]) -> Any:
    """A built-in plugin class as an inline plugin with the real manifest.json of its package."""
    from nexus.kernel import inline_plugin

    module_file = sys.modules[cls.__module__].__file__
    assert module_file is not None
    manifest = Path(module_file).parent / "manifest.json"
    return inline_plugin(json.loads(manifest.read_text()), cls)


def _server_or_skip(start: Callable[[], Any]) -> Any:
    from nexus.testing.servers import ServerUnavailable, services_required

    try:
        return start()
    except ServerUnavailable as exc:
        if services_required():
            pytest.fail(f"{exc}; NEXUS_REQUIRE_SERVICES=1 makes this a failure")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def redis_server() -> Any:
    """A real redis-server on a free loopback port for the whole test session."""
    from nexus.testing.servers import redis_server as server

    manager = server()
    running = _server_or_skip(manager.__enter__)
    yield running
    manager.__exit__(None, None, None)


@pytest.fixture
def own_redis() -> Any:
    """A redis-server of this test's own, which it may stop and start again on its port."""
    from nexus.testing.servers import start_redis

    server = _server_or_skip(start_redis)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Any:
    """A real PostgreSQL cluster on a free loopback port for the whole test session."""
    from nexus.testing.servers import postgres_server as server

    manager = server()
    running = _server_or_skip(manager.__enter__)
    yield running
    manager.__exit__(None, None, None)

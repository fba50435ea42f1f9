"""A project directory (nexus.yaml + plugins) in tmp_path, and a runner for the `nexus` command."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from nexus.cli import main
from nexus.kernel import loader
from tests.conftest import PluginWriter

#: Plugin code that must never run: importing it leaves a marker file and raises.
TRIPWIRE = """
from pathlib import Path

Path(__file__).with_name("IMPORTED").write_text("plugin code ran")
raise RuntimeError("this plugin's code was imported")
"""


class Project:
    """A Nexus project in a directory: nexus.yaml, overlays and a plugins/ directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.plugins = PluginWriter(root / "plugins")
        self.config = root / "nexus.yaml"
        self.configure()

    def configure(self, **sections: Any) -> Path:
        """Write nexus.yaml: plugin_paths [plugins], data_dir data, plus `sections`."""
        document: dict[str, Any] = {"plugin_paths": ["plugins"], "data_dir": "data", **sections}
        # Only this project's plugins: installed ones (the built-ins) have tests of their own.
        document["kernel"] = {"entry_points": False, **document.get("kernel", {})}
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))
        return self.config

    def overlay(self, environment: str, **sections: Any) -> Path:
        """Write the nexus.<environment>.yaml overlay."""
        path = self.root / f"nexus.{environment}.yaml"
        path.write_text(yaml.safe_dump(sections, sort_keys=False))
        return path

    def was_imported(self, name: str) -> bool:
        """Whether the tripwire in plugin `name` went off."""
        return (self.plugins.root / name / "IMPORTED").exists()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NEXUS_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("NEXUS"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def forget_plugin_modules() -> Iterator[None]:
    """Drop imported directory plugins after each test: the next test reuses their names."""
    yield
    for name in {m.split(".")[1] for m in list(sys.modules) if m.startswith(f"{loader.PACKAGE}.")}:
        loader.release_directory(name)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project in tmp_path, which is also the working directory."""
    monkeypatch.chdir(tmp_path)
    return Project(tmp_path)


Nexus = Callable[..., Result]


@pytest.fixture
def nexus() -> Nexus:
    """Run `nexus <args>` in-process; stdout and stderr stay separate."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke

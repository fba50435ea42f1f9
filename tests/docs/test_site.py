"""The documentation site builds in strict mode, with the generated references in it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from nexus.cli import main
from tests.docs.snippets import DOCS

ROOT = DOCS.parent


def _command_paths(group: click.Group, prefix: str = "nexus") -> list[str]:
    paths = []
    for name, command in sorted(group.commands.items()):
        paths.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            paths += _command_paths(command, f"{prefix} {name}")
    return paths


def test_site_builds_strictly_with_cli_and_api_reference(tmp_path: Path) -> None:
    """`mkdocs build --strict` succeeds; the CLI page lists every command, the API pages render."""
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cli = (site / "reference" / "cli.html").read_text()
    missing = [path for path in _command_paths(main) if f"<code>{path}</code>" not in cli]
    assert missing == []
    api = (site / "reference" / "api" / "nexus.html").read_text()
    assert 'id="nexus.Plugin.setup"' in api and 'id="nexus.ServiceKey"' in api
    pages = (site / "reference" / "api" / "plugins.html").read_text()
    assert 'id="nexus.plugins.auth.require"' in pages

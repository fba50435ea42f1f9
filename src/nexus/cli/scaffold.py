"""`nexus new` and `nexus plugin new`: start an application or a plugin from templates."""

from __future__ import annotations

import json
import keyword
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Final

import click

from nexus._version import __version__
from nexus.cli._options import CommandError
from nexus.kernel.manifest import NAME_PATTERN

#: Names of the plugins that ship with Nexus; a project plugin of the same name would clash.
BUILT_IN_PLUGINS: Final = frozenset({"admin", "audit", "auth", "cache", "database", "monitoring"})
#: The plugin `nexus new` puts in a new application.
EXAMPLE_PLUGIN: Final = "catalog"
PLUGIN_DESCRIPTION: Final = "items to create and list, and a feed of its own events"

_NAME: Final = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class GeneratedFile:
    """A file to write: where, and its text."""

    path: Path
    text: str


def _render(template: str, **values: str) -> str:
    source = resources.files("nexus.cli").joinpath("templates", *template.split("/"))
    return Template(source.read_text(encoding="utf-8")).substitute(values)


def check_plugin_name(name: str, *, force: bool = False) -> str:
    """Return `name` if it can name a new plugin, else raise CommandError saying why."""
    if "/" in name or "\\" in name or ".." in name:
        raise CommandError(
            f"Plugin name {name!r} contains a path; give just the name (choose the directory "
            f"with --dir)."
        )
    if not _NAME.match(name):
        suggestion = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
        hint = (
            f", e.g. {suggestion!r}"
            if _NAME.match(suggestion) and not keyword.iskeyword(suggestion)
            else ""
        )
        raise CommandError(
            f"Plugin name {name!r} is not lower snake case: it must start with a letter and "
            f"use only a-z, 0-9 and '_' (at most 64 characters){hint}."
        )
    if keyword.iskeyword(name):
        raise CommandError(
            f"Plugin name {name!r} is a Python keyword, so its package could not be imported; "
            f"choose another name, e.g. '{name}_plugin'."
        )
    if name in BUILT_IN_PLUGINS and not force:
        raise CommandError(
            f"Plugin name {name!r} is the name of a built-in plugin, which it would clash with; "
            f"choose another name, or pass --force if you replace the built-in one."
        )
    return name


def class_name(plugin: str) -> str:
    """The plugin class for a plugin name: `user_manager` -> `UserManagerPlugin`."""
    return "".join(part[:1].upper() + part[1:] for part in plugin.split("_")) + "Plugin"


def plugin_files(name: str, plugins_dir: Path, tests_dir: Path) -> list[GeneratedFile]:
    """The files of a new plugin `name` in `plugins_dir`, and its tests in `tests_dir`."""
    values = {
        "name": name,
        "class_name": class_name(name),
        "description": PLUGIN_DESCRIPTION,
        "nexus_spec": ">=" + ".".join(__version__.split(".")[:2]),
    }
    package = plugins_dir / name
    return [
        GeneratedFile(package / "manifest.json", _render("plugin/manifest.json.tmpl", **values)),
        GeneratedFile(package / "__init__.py", _render("plugin/__init__.py.tmpl", **values)),
        GeneratedFile(package / "plugin.py", _render("plugin/plugin.py.tmpl", **values)),
        GeneratedFile(
            tests_dir / f"test_{name}.py", _render("plugin/test_plugin.py.tmpl", **values)
        ),
    ]


def app_files(root: Path, app_name: str) -> list[GeneratedFile]:
    """The files of a new application in `root`, with the example plugin and its tests."""
    values = {
        "app_name": app_name,
        "app_name_yaml": json.dumps(app_name, ensure_ascii=False),
        "app_name_py": json.dumps(app_name),
        "plugin": EXAMPLE_PLUGIN,
    }
    files = [
        GeneratedFile(root / "nexus.yaml", _render("app/nexus.yaml.tmpl", **values)),
        GeneratedFile(root / "README.md", _render("app/README.md.tmpl", **values)),
        GeneratedFile(root / ".gitignore", _render("app/gitignore.tmpl", **values)),
        GeneratedFile(root / "pyproject.toml", _render("app/pyproject.toml.tmpl", **values)),
        GeneratedFile(root / "tests" / "conftest.py", _render("app/conftest.py.tmpl", **values)),
    ]
    return files + plugin_files(EXAMPLE_PLUGIN, root / "plugins", root / "tests")


def write(files: list[GeneratedFile], *, force: bool) -> None:
    """Write `files`; unless `force`, refuse (writing nothing) if any of them exists."""
    if not force:
        existing = [str(f.path) for f in files if f.path.exists()]
        if existing:
            raise CommandError(
                f"{', '.join(existing)} already exist(s); nothing was written. "
                f"Pass --force to overwrite."
            )
    for file in files:
        file.path.parent.mkdir(parents=True, exist_ok=True)
        file.path.write_text(file.text, encoding="utf-8")


def _check_app_name(name: str) -> str:
    if not name.strip() or any(ord(c) < 32 for c in name):
        raise CommandError(f"Application name {name!r} must be one line of visible text.")
    return name


@click.command("new")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", "app_name", metavar="APP", help="Application name (default: DIRECTORY).")
@click.option("--force", is_flag=True, help="Write into a non-empty directory, overwriting files.")
def new(directory: Path, app_name: str | None, force: bool) -> None:
    """Create an application in DIRECTORY: nexus.yaml, an example plugin and its tests."""
    if directory.exists() and any(directory.iterdir()) and not force:
        raise CommandError(
            f"Directory {str(directory)!r} is not empty; choose a new directory or pass --force."
        )
    name = _check_app_name(app_name or directory.resolve().name)
    write(app_files(directory, name), force=True)
    click.echo(f"Created application {name!r} in {directory}/ with plugin {EXAMPLE_PLUGIN!r}.")
    click.echo("Next:")
    click.echo(f"  cd {directory}")
    click.echo("  nexus run --config nexus.yaml   # serve on http://127.0.0.1:8000")
    click.echo("  pytest                          # needs pytest, pytest-asyncio and httpx")


@click.group("plugin")
def plugin() -> None:
    """Create plugins."""


@plugin.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "plugins_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("plugins"),
    show_default=True,
    help="Plugin directory to create it in; its tests go to the sibling tests/ directory.",
)
@click.option("--force", is_flag=True, help="Overwrite existing files; allow built-in names.")
def new_plugin(name: str, plugins_dir: Path, force: bool) -> None:
    """Create plugin NAME: manifest, code with a route and an event handler, and tests."""
    check_plugin_name(name, force=force)
    tests_dir = plugins_dir.parent / "tests"
    package = plugins_dir / name
    if package.exists() and not force:
        raise CommandError(f"{package} already exists; nothing was written. Pass --force.")
    files = plugin_files(name, plugins_dir, tests_dir)
    write(files, force=force)
    click.echo(f"Created plugin {name!r}:")
    for file in files:
        click.echo(f"  {file.path}")
    click.echo(f"It serves /api/{name}/items once {plugins_dir} is in plugin_paths (nexus.yaml).")

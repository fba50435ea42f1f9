"""Where configuration values come from: the base file, its overlay, code; merging the layers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus.errors import Problem
from nexus.kernel._yaml import KeyPath

__all__ = [
    "Sources",
    "apply_environment",
    "base_file",
    "choose_environment",
    "code_sources",
    "line_sources",
    "merge",
]


@dataclass(frozen=True)
class Sources:
    """Where each key path of the merged raw configuration was set."""

    tree: dict[str, Any]
    by_path: dict[KeyPath, str]
    fallback: str  # the base file name, or "defaults" when there is none

    def nearest(self, path: KeyPath) -> str | None:
        for end in range(len(path), -1, -1):
            if (source := self.by_path.get(path[:end])) is not None:
                return source
        return None

    def locate(self, path: KeyPath) -> str:
        return self.nearest(path) or self.fallback

    def exists(self, path: KeyPath) -> bool:
        node: Any = self.tree
        for key in path:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return False
        return True


def code_sources(data: Mapping[str, Any], path: KeyPath = ()) -> dict[KeyPath, str]:
    found: dict[KeyPath, str] = {}
    for key, value in data.items():
        here = (*path, str(key))
        found[here] = "settings passed in code"
        if isinstance(value, Mapping):
            found.update(code_sources(value, here))
    return found


def base_file(
    path: str | Path | None, environ: Mapping[str, str]
) -> tuple[Path | None, Problem | None]:
    if path is not None:
        origin = str(path)
    elif environ.get("NEXUS_CONFIG"):
        origin = "environment variable NEXUS_CONFIG"
        path = environ["NEXUS_CONFIG"]
    else:
        return None, None
    base = Path(path)
    if base.exists():
        return base, None
    return None, Problem(origin, "", f"configuration file {str(base)!r} does not exist")


def choose_environment(
    argument: str | None,
    environ: Mapping[str, str],
    env_tree: Mapping[str, Any],
    base_data: Mapping[str, Any],
    overrides: Mapping[str, Any],
) -> tuple[str, str | None]:
    """The selected environment and, if it was not set in the configuration, what chose it."""
    if argument is not None:
        return argument, "environment argument"
    if environ.get("NEXUS_ENV"):
        return environ["NEXUS_ENV"], "environment variable NEXUS_ENV"
    for layer in (overrides, env_tree, base_data):
        app = layer.get("app")
        if isinstance(app, dict) and isinstance(app.get("environment"), str):
            return app["environment"], None
    return "development", None


def apply_environment(
    tree: dict[str, Any], sources: dict[KeyPath, str], chosen: str, chooser: str | None
) -> Problem | None:
    """Make app.environment the selected environment, so `config.environment` agrees."""
    app = tree.get("app")
    if chooser is not None and (app is None or isinstance(app, dict)):
        tree["app"] = app = dict(app or {})
        app["environment"] = chosen
        sources[("app", "environment")] = chooser
        sources.setdefault(("app",), chooser)
        return None
    current = app.get("environment") if isinstance(app, dict) else None
    if isinstance(current, str) and current != chosen:
        return Problem(
            sources.get(("app", "environment"), "defaults"),
            "app.environment",
            f"an environment overlay cannot change the environment: this file is for "
            f"{chosen!r} but sets {current!r}; remove it",
        )
    return None


def line_sources(name: str, lines: Mapping[KeyPath, int]) -> dict[KeyPath, str]:
    return {path: f"{name}:{line}" for path, line in lines.items() if path}


def merge(
    tree: dict[str, Any],
    sources: dict[KeyPath, str],
    layer: Mapping[str, Any],
    layer_sources: Mapping[KeyPath, str],
    path: KeyPath = (),
) -> None:
    """Deep-merge `layer` into `tree`: mappings merge, everything else replaces."""
    for key, value in layer.items():
        here = (*path, key)
        current = tree.get(key)
        # An empty section (`server:` with everything commented out) merges nothing.
        if isinstance(current, dict) and (value is None or isinstance(value, dict)):
            if value:
                merge(current, sources, value, layer_sources, here)
            continue  # the section keeps the source that introduced it
        tree[key] = value
        depth = len(here)
        for stale in [p for p in sources if p[:depth] == here]:
            del sources[stale]
        sources.update({p: s for p, s in layer_sources.items() if p[:depth] == here})

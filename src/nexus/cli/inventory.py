"""What is installed and whether it can start, judged from manifests alone.

Discovery and graph resolution only: nothing here imports plugin code, except
`check_plugin_configs`, which imports each enabled plugin's entry class to read its Config.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from nexus._version import __version__
from nexus.errors import ConfigError, DependencyCycleError, ManifestError, NexusError
from nexus.kernel.config import NexusConfig
from nexus.kernel.discovery import MANIFEST, Discovery, PluginSource, discover
from nexus.kernel.graph import Resolution, resolve
from nexus.kernel.manifest import parse_specifier
from nexus.kernel.plugin import Plugin

#: What `plugins list` can say about a plugin without running it.
RowState = Literal["validated", "blocked", "disabled", "failed"]
FindingKind = Literal["manifest", "dependency", "cycle", "import", "config"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem (or warning) found in an installation, with where to fix it."""

    kind: FindingKind
    plugin: str | None
    location: str
    path: str
    message: str

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.location, self.path) if part)
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "kind": self.kind,
            "plugin": self.plugin,
            "location": self.location,
            "path": self.path,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class PluginRow:
    """One discovered plugin as `plugins list` shows it."""

    name: str
    state: RowState
    source: PluginSource | None
    enabled: bool
    reason: str | None = None
    problems: tuple[Finding, ...] = ()

    @property
    def version(self) -> str | None:
        """The manifest's version, when the manifest is valid."""
        return self.source.manifest.version if self.source else None

    @property
    def origin(self) -> str:
        """Where the plugin was found."""
        if self.source is not None:
            return self.source.origin
        locations = [p.location for p in self.problems if p.location]
        return _MANIFEST_SUFFIX.sub("", locations[0]) if locations else ""

    @property
    def label(self) -> str:
        """The state as shown in tables: `failed(validate)` names the stage."""
        return "failed(validate)" if self.state == "failed" else self.state

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        manifest = self.source.manifest if self.source else None
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state,
            "origin": self.origin,
            "enabled": self.enabled,
            "reason": self.reason,
            "description": manifest.description if manifest else "",
            "requires": dict(manifest.requires) if manifest else {},
            "optional": dict(manifest.optional) if manifest else {},
            "after": list(manifest.after) if manifest else [],
            "failure": {"stage": "validate", "reason": self.reason}
            if self.state == "failed"
            else None,
            "problems": [p.to_dict() for p in self.problems],
        }


@dataclass(slots=True)
class Inventory:
    """Every discovered plugin, the resolved start order and what stands in the way."""

    config: NexusConfig
    discovery: Discovery
    resolution: Resolution
    rows: dict[str, PluginRow] = field(default_factory=dict)

    @property
    def order(self) -> list[str]:
        """Plugins that can start, in start order."""
        return self.resolution.order

    def problems(self) -> list[Finding]:
        """Invalid manifests, missing or mismatched requirements and cycles, enabled or not."""
        found = [p for name in sorted(self.rows) for p in self.rows[name].problems]
        for cycle in self.resolution.cycles:
            found.append(Finding("cycle", cycle[0], "", "", str(DependencyCycleError(cycle))))
        for name, reason in self.resolution.blocked.items():
            if reason.startswith("is in a dependency cycle"):
                continue  # reported once for the whole cycle above
            row = self.rows[name]
            key = "nexus" if reason.startswith("needs nexus") else "requires"
            found.append(
                Finding(
                    "dependency",
                    name,
                    manifest_location(row.source),
                    key,
                    f"plugin {name!r} {reason}",
                )
            )
        return found

    def warnings(self) -> list[Finding]:
        """Optional dependencies installed in a version the plugin does not accept."""
        found: list[Finding] = []
        for name in sorted(self.rows):
            source = self.rows[name].source
            if source is None:
                continue
            for dep, spec in sorted(source.manifest.optional.items()):
                other = self.rows.get(dep)
                if other is None or other.source is None or not spec:
                    continue
                version = other.source.manifest.parsed_version
                if not parse_specifier(spec).contains(version, prereleases=True):
                    message = (
                        f"plugin {name!r} can use {dep}{spec}, but {dep} {version} is installed; "
                        f"it will start without it"
                    )
                    found.append(
                        Finding("dependency", name, manifest_location(source), "optional", message)
                    )
        return found


def manifest_location(source: PluginSource | None) -> str:
    """Where the plugin's manifest is, as discovery names it in messages."""
    if source is None:
        return ""
    if source.kind == "directory":
        return f"{source.origin}/{MANIFEST}"
    if source.kind == "entry_point":
        return f"{source.origin} {MANIFEST}"
    return source.origin


def _findings(name: str, error: NexusError) -> tuple[Finding, ...]:
    if isinstance(error, ManifestError):
        return tuple(
            Finding("manifest", name, p.location, p.path, p.message) for p in error.problems
        )
    return (Finding("manifest", name, "", "", str(error)),)


def _one_line(error: NexusError) -> str:
    """The error without the manifest's location, which the origin column already shows."""
    if isinstance(error, ManifestError):
        return "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in error.problems)
    return str(error)


_MANIFEST_SUFFIX = re.compile(rf"[/ ]{re.escape(MANIFEST)}(:\d+:\d+)?\Z")


def take_inventory(config: NexusConfig, *, entry_points: bool | None = None) -> Inventory:
    """Discover every plugin and resolve the graph as the kernel would, importing no code."""
    if entry_points is None:
        entry_points = config.kernel.entry_points
    found = discover(config.plugin_paths, entry_points=entry_points)
    unavailable: dict[str, str] = {}
    for name, error in found.errors.items():
        unavailable[name] = f"invalid ({_one_line(error)})"
    for name in found.sources:
        if not config.plugin_enabled(name):
            unavailable[name] = "disabled"
    manifests = {name: source.manifest for name, source in found.sources.items()}
    resolution = resolve(manifests, host_version=__version__, unavailable=unavailable)
    inventory = Inventory(config, found, resolution)
    rows: dict[str, PluginRow] = {}
    for name, error in found.errors.items():
        enabled = config.plugin_enabled(name)
        reason, problems = _one_line(error), _findings(name, error)
        rows[name] = PluginRow(name, "failed", None, enabled, reason, problems)
    for name, source in found.sources.items():
        if not config.plugin_enabled(name):
            rows[name] = PluginRow(name, "disabled", source, False, "disabled in the configuration")
        elif name in resolution.blocked:
            rows[name] = PluginRow(name, "blocked", source, True, resolution.blocked[name])
        else:
            rows[name] = PluginRow(name, "validated", source, True)
    inventory.rows = dict(sorted(rows.items()))
    return inventory


@dataclass(slots=True)
class ConfigCheck:
    """The outcome of validating the enabled plugins' config sections against their models."""

    models: dict[str, type[BaseModel] | None] = field(default_factory=dict)
    values: dict[str, BaseModel | None] = field(default_factory=dict)
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)


def check_plugin_configs(inventory: Inventory) -> ConfigCheck:
    """Import each enabled plugin with a valid manifest, and validate its `plugins.<name>`.

    Every problem is collected: import failures, and every config problem of every plugin.
    """
    config = inventory.config
    result = ConfigCheck()
    for name, row in inventory.rows.items():
        if not row.enabled or row.source is None:
            continue
        location = manifest_location(row.source)
        try:
            entry = row.source.load_class()
        except NexusError as exc:
            result.problems.append(Finding("import", name, location, "entry", str(exc)))
            continue
        if not (isinstance(entry, type) and issubclass(entry, Plugin)):
            message = f"{row.source.manifest.entry} is not a nexus.Plugin subclass"
            result.problems.append(Finding("import", name, location, "entry", message))
            continue
        result.models[name] = entry.Config
    try:
        result.values = config.validate_plugins(result.models)
    except ConfigError as exc:
        for problem in exc.problems:
            parts = problem.path.split(".")
            plugin = parts[1] if len(parts) > 1 and parts[0] == "plugins" else None
            result.problems.append(
                Finding("config", plugin, problem.location, problem.path, problem.message)
            )
    installed = sorted(inventory.rows)
    for name in sorted(config.plugins):
        if name in inventory.rows:
            continue
        close = difflib.get_close_matches(name, installed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        message = (
            f"configures plugin {name!r}, which is not installed; {hint}"
            f"installed plugins: {', '.join(installed) or 'none'}. This section is ignored."
        )
        result.warnings.append(
            Finding("config", name, config.source_of(f"plugins.{name}"), f"plugins.{name}", message)
        )
    return result

"""Finding plugins: plugin directories and the `nexus.plugins` entry-point group.

Only manifests are read here; no plugin code is imported.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nexus.errors import DuplicatePluginError, ManifestError, NexusError, Problem
from nexus.kernel import loader
from nexus.kernel.manifest import Manifest, load_manifest

if TYPE_CHECKING:
    from nexus.kernel.plugin import Plugin

logger = logging.getLogger("nexus.kernel")

ENTRY_POINT_GROUP = "nexus.plugins"
MANIFEST = "manifest.json"

SourceKind = Literal["directory", "entry_point", "inline"]


@dataclass(frozen=True, slots=True, eq=False)
class PluginSource:
    """Where a plugin comes from, with its validated manifest."""

    manifest: Manifest
    kind: SourceKind
    origin: str  # human-readable, for messages: "plugins/auth" or "entry point 'auth' (dist)"
    path: Path | None = None  # the plugin package directory, when known
    target: str = ""  # entry point "package.module:Class"
    factory: Callable[[], Plugin] | None = None  # inline plugins

    @property
    def name(self) -> str:
        """The plugin's name."""
        return self.manifest.name

    def reread(self) -> PluginSource:
        """This source with its manifest read from disk again (for reload)."""
        if self.kind == "directory" and self.path is not None:
            return _directory_source(self.path, self.origin)
        if self.kind == "entry_point" and self.path is not None:
            manifest = load_manifest(self.path / MANIFEST, display=f"{self.origin} {MANIFEST}")
            return PluginSource(manifest, self.kind, self.origin, self.path, self.target)
        return self

    def load_class(self) -> object:
        """Import the plugin's entry object (its class, or the inline factory)."""
        if self.kind == "inline":
            return self.factory
        if self.kind == "directory" and self.path is not None:
            return loader.import_directory_plugin(
                self.name, self.path, self.manifest.module, self.manifest.class_name
            )
        module, _, attribute = self.target.partition(":")
        return loader.import_object(module, attribute, self.origin)

    def forget(self) -> None:
        """Drop the plugin's modules so the next `load_class` re-imports them."""
        if self.kind == "directory":
            loader.forget(f"{loader.PACKAGE}.{self.name}", directory_plugin=self.name)
        elif self.kind == "entry_point":
            loader.forget(self.target.partition(":")[0].rpartition(".")[0] or self.target)


@dataclass(slots=True)
class Discovery:
    """Every plugin found, and every plugin that could not be accepted (by name)."""

    sources: dict[str, PluginSource] = field(default_factory=dict)
    errors: dict[str, NexusError] = field(default_factory=dict)

    def add(self, source: PluginSource) -> None:
        """Add a source; a second plugin with the same name is an error naming both."""
        name = source.name
        if name in self.errors:
            return
        existing = self.sources.get(name)
        if existing is not None:
            self.errors[name] = DuplicatePluginError(name, existing.origin, source.origin)
            del self.sources[name]
            return
        self.sources[name] = source


def _display(path: Path) -> str:
    """The path relative to the working directory when below it, else as it is."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _directory_source(directory: Path, origin: str) -> PluginSource:
    manifest = load_manifest(directory / MANIFEST, display=f"{origin}/{MANIFEST}")
    if manifest.name != directory.name:
        raise ManifestError(
            [
                Problem(
                    f"{origin}/{MANIFEST}",
                    "name",
                    f"is {manifest.name!r} but the plugin directory is {directory.name!r}; "
                    f"rename one so they match",
                )
            ]
        )
    return PluginSource(manifest, "directory", origin, directory)


def scan_directories(paths: Iterable[Path], discovery: Discovery, only: str | None = None) -> None:
    """Add every `<dir>/<name>/manifest.json` below the given plugin directories."""
    for base in paths:
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except FileNotFoundError:
            logger.warning("Plugin directory %s does not exist; skipping it.", _display(base))
            continue
        except NotADirectoryError:
            logger.warning("Plugin path %s is not a directory; skipping it.", _display(base))
            continue
        for entry in entries:
            if only is not None and entry.name != only:
                continue
            if not entry.is_dir() or not os.path.isfile(os.path.join(entry.path, MANIFEST)):
                continue
            directory = Path(entry.path)
            origin = _display(directory)
            try:
                discovery.add(_directory_source(directory, origin))
            except ManifestError as exc:
                if entry.name not in discovery.sources:
                    discovery.errors.setdefault(entry.name, exc)


def _entry_point_package_dir(entry_point: metadata.EntryPoint) -> Path | None:
    module = entry_point.value.partition(":")[0].strip()
    package = module.rpartition(".")[0] or module
    relative = package.replace(".", "/")
    distribution = entry_point.dist
    if distribution is not None and distribution.files:
        for file in distribution.files:
            if file.name == MANIFEST and str(file.parent).replace(os.sep, "/") == relative:
                return Path(str(distribution.locate_file(file))).parent
    # Editable installs list no package files; find_spec on a top-level name imports nothing.
    top, _, rest = package.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location, *rest.split(".")) if rest else Path(location)
        if (candidate / MANIFEST).is_file():
            return candidate
    return None


def scan_entry_points(discovery: Discovery, only: str | None = None) -> None:
    """Add every plugin registered in the `nexus.plugins` entry-point group."""
    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if only is not None and entry_point.name != only:
            continue
        dist = entry_point.dist.name if entry_point.dist is not None else "unknown distribution"
        origin = f"entry point {entry_point.name!r} of {dist}"
        directory = _entry_point_package_dir(entry_point)
        if directory is None:
            discovery.errors.setdefault(
                entry_point.name,
                ManifestError(
                    [
                        Problem(
                            origin,
                            "",
                            f"no {MANIFEST} found beside {entry_point.value.partition(':')[0]}; "
                            f"ship it as package data of the plugin package",
                        )
                    ]
                ),
            )
            continue
        location = f"{origin} {MANIFEST}"
        try:
            manifest = load_manifest(directory / MANIFEST, display=location)
        except ManifestError as exc:
            discovery.errors.setdefault(entry_point.name, exc)
            continue
        if manifest.name != entry_point.name:
            discovery.errors.setdefault(
                entry_point.name,
                ManifestError(
                    [
                        Problem(
                            location,
                            "name",
                            f"is {manifest.name!r} but the entry point is named "
                            f"{entry_point.name!r}; they must match",
                        )
                    ]
                ),
            )
            continue
        discovery.add(
            PluginSource(manifest, "entry_point", origin, directory, entry_point.value.strip())
        )


def discover(
    paths: Sequence[Path] = (),
    *,
    entry_points: bool = True,
    inline: Iterable[PluginSource] = (),
    only: str | None = None,
) -> Discovery:
    """Find plugins in `paths`, the entry-point group and `inline`; `only` limits to one name."""
    discovery = Discovery()
    for source in inline:
        if only is None or source.name == only:
            discovery.add(source)
    scan_directories(paths, discovery, only)
    if entry_points:
        scan_entry_points(discovery, only)
    return discovery

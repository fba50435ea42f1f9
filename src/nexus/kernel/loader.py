"""Importing plugin code, and forgetting it again so a reload reads the files anew."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from nexus.errors import PluginImportError

#: Directory plugins are imported as `nexus_plugins.<name>` so they never clash with
#: installed packages and can be dropped from sys.modules as one subtree.
PACKAGE: Final = "nexus_plugins"


class _FreshSourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles from source, ignoring __pycache__, whose mtime check can miss a quick edit."""

    def path_stats(self, path: str) -> dict[str, float]:
        raise OSError("bytecode cache bypassed for a reloaded plugin")


class _EmptyPackageLoader(importlib.abc.Loader):
    """A plugin directory without __init__.py is still a package."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _PluginFinder(importlib.abc.MetaPathFinder):
    """Finds `nexus_plugins.<name>[.sub]` in the directory registered for each plugin."""

    def __init__(self) -> None:
        self.directories: dict[str, Path] = {}
        self.fresh: set[str] = set()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        parts = fullname.split(".")
        if parts[0] != PACKAGE or len(parts) < 2:
            return None
        name = parts[1]
        directory = self.directories.get(name)
        if directory is None:
            return None
        if len(parts) == 2:
            init = directory / "__init__.py"
            if init.is_file():
                loader = (
                    _FreshSourceLoader(fullname, str(init))
                    if name in self.fresh
                    else importlib.machinery.SourceFileLoader(fullname, str(init))
                )
                return importlib.util.spec_from_file_location(
                    fullname, init, loader=loader, submodule_search_locations=[str(directory)]
                )
            spec = importlib.machinery.ModuleSpec(fullname, _EmptyPackageLoader(), is_package=True)
            spec.submodule_search_locations = [str(directory)]
            return spec
        found = importlib.machinery.PathFinder.find_spec(fullname, path)
        if (
            found is not None
            and name in self.fresh
            and type(found.loader) is importlib.machinery.SourceFileLoader
            and found.origin is not None
        ):
            found.loader = _FreshSourceLoader(fullname, found.origin)
        return found


_finder = _PluginFinder()


def _install() -> None:
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    if PACKAGE not in sys.modules:
        root = types.ModuleType(PACKAGE, "Namespace of plugins loaded from plugin directories.")
        root.__path__ = []
        sys.modules[PACKAGE] = root


def directory_module(name: str, module: str) -> str:
    """The import name of `module` inside directory plugin `name`."""
    return f"{PACKAGE}.{name}.{module}"


def import_directory_plugin(name: str, directory: Path, module: str, attribute: str) -> object:
    """Import `module:attribute` from the plugin package at `directory`."""
    _install()
    previous = _finder.directories.get(name)
    if previous is not None and previous != directory:
        # Another directory served this name before: its modules must not be reused.
        forget(f"{PACKAGE}.{name}", directory_plugin=name)
    _finder.directories[name] = directory
    return _import(directory_module(name, module), attribute, f"plugin directory {directory}")


def import_object(module: str, attribute: str, origin: str) -> object:
    """Import `module:attribute` from an installed package."""
    return _import(module, attribute, origin)


def _import(module: str, attribute: str, origin: str) -> object:
    try:
        imported = importlib.import_module(module)
    except SyntaxError as exc:
        where = f"{Path(exc.filename or '?').name}:{exc.lineno}" if exc.lineno else ""
        raise PluginImportError(
            f"Syntax error in {module} ({origin}) at {where}: {exc.msg}. Fix the file and reload."
        ) from exc
    except ImportError as exc:
        raise PluginImportError(f"Cannot import {module} ({origin}): {exc}") from exc
    # An arbitrary exception can escape a plugin module's top level.
    except Exception as exc:
        raise PluginImportError(
            f"Importing {module} ({origin}) raised {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return getattr(imported, attribute)
    except AttributeError:
        raise PluginImportError(
            f"Module {module} ({origin}) has no {attribute!r}; check 'entry' in manifest.json."
        ) from None


def forget(package: str, *, directory_plugin: str | None = None) -> None:
    """Drop `package` and its submodules from sys.modules so the next import reads the files.

    For a directory plugin, later imports also bypass the bytecode cache.
    """
    prefix = package + "."
    for module_name in [m for m in sys.modules if m == package or m.startswith(prefix)]:
        del sys.modules[module_name]
    parent_name, _, child = package.rpartition(".")
    parent = sys.modules.get(parent_name) if parent_name else None
    if parent is not None and getattr(parent, child, None) is not None:
        delattr(parent, child)  # the import system binds submodules on their parent
    if directory_plugin is not None:
        _finder.fresh.add(directory_plugin)
    importlib.invalidate_caches()


def release_directory(name: str) -> None:
    """Forget a directory plugin entirely (on unload)."""
    forget(f"{PACKAGE}.{name}", directory_plugin=name)
    _finder.directories.pop(name, None)

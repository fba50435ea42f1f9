"""Errors raised by Nexus: each names the thing, what was expected and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class NexusError(Exception):
    """Base class of every error Nexus raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem: where it is, and what is wrong there."""

    location: str  # "plugins/auth/manifest.json" or "nexus.yaml:12"
    path: str  # dotted key path inside the document, "" for the document itself
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: {self.path}" if self.path else self.location
        return f"{where}: {self.message}"


class _ProblemsError(NexusError, ValueError):
    """An error that carries every problem found, so users fix them all in one pass."""

    title = "Invalid input"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"{self.title} ({count} problem{'s' if count != 1 else ''}):\n{lines}")


class ManifestError(_ProblemsError):
    """A plugin's manifest.json is missing, unreadable or invalid."""

    title = "Invalid plugin manifest"


class ConfigError(_ProblemsError):
    """The configuration (YAML files, environment variables, plugin sections) is invalid."""

    title = "Invalid configuration"


class DuplicatePluginError(NexusError, ValueError):
    """Two sources provide a plugin with the same name."""

    def __init__(self, name: str, first: str, second: str) -> None:
        self.name, self.first, self.second = name, first, second
        super().__init__(
            f"Plugin {name!r} is provided twice: by {first} and by {second}. "
            f"Remove or rename one of them."
        )


class DependencyCycleError(NexusError, ValueError):
    """Plugins depend on each other in a cycle."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__(
            f"Dependency cycle: {' -> '.join(self.cycle)}. "
            f"Break it by removing one of these requires/optional/after entries."
        )


class PluginNotFoundError(NexusError, LookupError):
    """An operation named a plugin that is not installed."""

    def __init__(self, name: str, installed: Sequence[str]) -> None:
        self.name = name
        names = ", ".join(sorted(installed)) or "none"
        super().__init__(f"No plugin named {name!r} is installed. Installed plugins: {names}.")


class PluginStateError(NexusError, RuntimeError):
    """An operation is not allowed in the plugin's current state."""


class PluginImportError(NexusError, ImportError):
    """A plugin's code could not be imported or its entry class not found."""


class StartupError(NexusError, RuntimeError):
    """Strict mode: a plugin failed or was blocked, so the kernel refuses to start."""


class ServiceNotFoundError(NexusError, LookupError):
    """A plugin asked for a service that no active plugin provides."""

    def __init__(self, key: str, requested_by: str, hint: str = "") -> None:
        self.key, self.requested_by = key, requested_by
        super().__init__(
            f"Plugin {requested_by!r} needs service {key!r}, but no active plugin provides it. "
            + (hint or f"Enable the providing plugin and add it to {requested_by!r}'s `requires`.")
        )


class ServiceConflictError(NexusError, ValueError):
    """A service key is already provided by another plugin."""

    def __init__(self, key: str, provider: str, requested_by: str) -> None:
        self.key, self.provider, self.requested_by = key, provider, requested_by
        super().__init__(
            f"Plugin {requested_by!r} cannot provide service {key!r}: plugin {provider!r} "
            f"already provides it. Only one active plugin may provide a service."
        )


class PermissionDeniedError(NexusError, PermissionError):
    """A plugin used a capability its manifest does not grant."""

    def __init__(self, plugin: str, permission: str) -> None:
        self.plugin, self.permission = plugin, permission
        super().__init__(
            f"Plugin {plugin!r} lacks permission {permission!r}. Add it (or a wildcard "
            f'covering it) to "permissions" in the plugin\'s manifest.json.'
        )


class EventError(NexusError, ValueError):
    """An event topic, pattern or payload is invalid."""


class EventQueueFullError(NexusError, RuntimeError):
    """A subscriber's queue stayed full for longer than the publish timeout."""


class TransportError(NexusError, ConnectionError):
    """The event transport could not carry an event (for example, its server is unreachable)."""

"""Nexus: a plugin-based application platform for Python on FastAPI.

Plugin authors import from here: `from nexus import Plugin, PluginContext, ServiceKey`.
"""

from __future__ import annotations

from nexus._version import __version__
from nexus.errors import (
    ConfigError,
    DependencyCycleError,
    DuplicatePluginError,
    EventError,
    EventQueueFullError,
    ManifestError,
    NexusError,
    PermissionDeniedError,
    PluginImportError,
    PluginNotFoundError,
    PluginStateError,
    ServiceConflictError,
    ServiceNotFoundError,
    StartupError,
    TransportError,
)
from nexus.kernel.context import PluginContext
from nexus.kernel.events import Event
from nexus.kernel.kernel import Kernel
from nexus.kernel.lifecycle import PluginState
from nexus.kernel.manifest import Manifest
from nexus.kernel.plugin import Health, Plugin
from nexus.kernel.services import ServiceKey

__all__ = [
    "ConfigError",
    "DependencyCycleError",
    "DuplicatePluginError",
    "Event",
    "EventError",
    "EventQueueFullError",
    "Health",
    "Kernel",
    "Manifest",
    "ManifestError",
    "NexusError",
    "PermissionDeniedError",
    "Plugin",
    "PluginContext",
    "PluginImportError",
    "PluginNotFoundError",
    "PluginState",
    "PluginStateError",
    "ServiceConflictError",
    "ServiceKey",
    "ServiceNotFoundError",
    "StartupError",
    "TransportError",
    "__version__",
]

"""The Nexus kernel: plugins, lifecycle, events, services and configuration (no HTTP)."""

from __future__ import annotations

from nexus.kernel.config import NexusConfig, load_config
from nexus.kernel.context import HTTP, Facet, FacetKey, HttpFacet, PluginContext
from nexus.kernel.discovery import PluginSource, discover
from nexus.kernel.events import Event, EventBus, MemoryTransport, Transport
from nexus.kernel.graph import Resolution, resolve, resolve_order
from nexus.kernel.kernel import Kernel, inline_plugin
from nexus.kernel.lifecycle import Failure, PluginState
from nexus.kernel.manager import PluginManager
from nexus.kernel.manifest import Manifest, load_manifest, manifest_json_schema
from nexus.kernel.plugin import Health, Plugin
from nexus.kernel.records import PluginStatus
from nexus.kernel.services import ServiceKey, ServiceRegistry

__all__ = [
    "HTTP",
    "Event",
    "EventBus",
    "Facet",
    "FacetKey",
    "Failure",
    "Health",
    "HttpFacet",
    "Kernel",
    "Manifest",
    "MemoryTransport",
    "NexusConfig",
    "Plugin",
    "PluginContext",
    "PluginManager",
    "PluginSource",
    "PluginState",
    "PluginStatus",
    "Resolution",
    "ServiceKey",
    "ServiceRegistry",
    "Transport",
    "discover",
    "inline_plugin",
    "load_config",
    "load_manifest",
    "manifest_json_schema",
    "resolve",
    "resolve_order",
]

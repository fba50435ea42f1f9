"""What the kernel knows about each plugin, and the read-only status it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nexus.kernel.lifecycle import Failure, PluginState

if TYPE_CHECKING:
    from nexus.errors import NexusError
    from nexus.kernel.context import Ownership, PluginContext
    from nexus.kernel.discovery import PluginSource
    from nexus.kernel.manifest import Manifest
    from nexus.kernel.plugin import Plugin


@dataclass(frozen=True, slots=True)
class PluginStatus:
    """A snapshot of one plugin, for CLIs, health endpoints and the admin API."""

    name: str
    state: PluginState
    version: str | None
    description: str
    origin: str
    enabled: bool
    requires: dict[str, str]
    optional: dict[str, str]
    failure: Failure | None
    blocked_reason: str | None
    boot_seconds: float | None
    last_error: str | None

    @property
    def reason(self) -> str | None:
        """Why the plugin is not active, if it is failed or blocked."""
        if self.failure is not None:
            return str(self.failure)
        return self.blocked_reason

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "name": self.name,
            "state": self.state.value,
            "version": self.version,
            "description": self.description,
            "origin": self.origin,
            "enabled": self.enabled,
            "requires": self.requires,
            "optional": self.optional,
            "failure": None
            if self.failure is None
            else {"stage": self.failure.stage, "reason": self.failure.reason},
            "blocked_reason": self.blocked_reason,
            "boot_seconds": self.boot_seconds,
            "last_error": self.last_error,
        }


@dataclass(slots=True, eq=False)
class PluginRecord:
    """The kernel's mutable record of one plugin."""

    name: str
    source: PluginSource | None
    state: PluginState = PluginState.DISCOVERED
    wanted: bool = True
    failure: Failure | None = None
    blocked_reason: str | None = None
    discovery_error: NexusError | None = None
    origin: str = ""
    plugin_class: type[Plugin] | None = None
    instance: Plugin | None = None
    context: PluginContext[Any] | None = None
    ownership: Ownership | None = None
    boot_seconds: float | None = None
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest(self) -> Manifest | None:
        """The validated manifest, when the plugin has one."""
        return self.source.manifest if self.source is not None else None

    def release(self) -> None:
        """Drop every reference to the plugin's code, so unloaded modules can be collected."""
        self.instance = None
        self.context = None
        self.ownership = None
        self.plugin_class = None

    def status(self) -> PluginStatus:
        """A read-only snapshot."""
        manifest = self.manifest
        return PluginStatus(
            name=self.name,
            state=self.state,
            version=manifest.version if manifest else None,
            description=manifest.description if manifest else "",
            origin=self.source.origin if self.source else self.origin,
            enabled=self.wanted,
            requires=dict(manifest.requires) if manifest else {},
            optional=dict(manifest.optional) if manifest else {},
            failure=self.failure,
            blocked_reason=self.blocked_reason,
            boot_seconds=self.boot_seconds,
            last_error=self.last_error,
        )

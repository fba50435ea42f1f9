"""What the cluster wants of each plugin, and what each instance reports it runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class DesiredPlugin:
    """The cluster's wish for one plugin: a field of the `<prefix>:desired` hash (JSON).

    `enabled` None leaves it as each instance's configuration says. `generation` grows with
    every change; `reloads` with every reload request, so each instance reloads once per
    request. `version` (if set) is the version the operator expects every instance to run:
    instances running another one report it.
    """

    enabled: bool | None = None
    version: str | None = None
    generation: int = 0
    reloads: int = 0
    actor: str | None = None
    updated_at: float | None = None

    @classmethod
    def from_json(cls, text: str | bytes) -> DesiredPlugin:
        """Read a hash field; ValueError if it is not a desired-state object."""
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"a JSON object was expected, got {type(data).__name__}")
        enabled, version, actor = data.get("enabled"), data.get("version"), data.get("actor")
        generation, reloads = data.get("generation", 0), data.get("reloads", 0)
        updated_at = data.get("updated_at")
        if enabled is not None and not isinstance(enabled, bool):
            raise ValueError(f"'enabled' must be true, false or null, got {enabled!r}")
        if version is not None and not isinstance(version, str):
            raise ValueError(f"'version' must be a string or null, got {version!r}")
        for name, number in (("generation", generation), ("reloads", reloads)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise ValueError(f"{name!r} must be a whole number >= 0, got {number!r}")
        return cls(
            enabled=enabled,
            version=version,
            generation=generation,
            reloads=reloads,
            actor=actor if isinstance(actor, str) else None,
            updated_at=updated_at if isinstance(updated_at, int | float) else None,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (as stored in Redis)."""
        return {
            "enabled": self.enabled,
            "version": self.version,
            "generation": self.generation,
            "reloads": self.reloads,
            "actor": self.actor,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class PluginReport:
    """One plugin as an instance runs it."""

    state: str
    version: str | None
    enabled: bool
    generation: int | None = None
    """The desired-state generation this instance last applied, if any."""
    problem: str | None = None
    """Why the plugin is not as the cluster wants it here (or why it failed), if so."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "state": self.state,
            "version": self.version,
            "enabled": self.enabled,
            "generation": self.generation,
            "problem": self.problem,
        }


@dataclass(frozen=True, slots=True)
class InstanceReport:
    """What one instance runs: its `<prefix>:instance:<id>` hash, refreshed by heartbeats."""

    id: str
    host: str
    pid: int
    nexus_version: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    plugins: dict[str, PluginReport] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, for the API."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "nexus_version": self.nexus_version,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "plugins": {name: report.as_dict() for name, report in sorted(self.plugins.items())},
        }

    def to_fields(self) -> dict[str, str]:
        """The hash fields stored in Redis."""
        plugins = {name: report.as_dict() for name, report in self.plugins.items()}
        return {
            "id": self.id,
            "host": self.host,
            "pid": str(self.pid),
            "nexus_version": self.nexus_version,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "plugins": orjson.dumps(plugins).decode(),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> InstanceReport:
        """Read a report hash; ValueError if a field is missing or malformed."""
        try:
            plugins = {
                name: PluginReport(
                    state=str(item["state"]),
                    version=item.get("version"),
                    enabled=bool(item["enabled"]),
                    generation=item.get("generation"),
                    problem=item.get("problem"),
                )
                for name, item in orjson.loads(fields["plugins"]).items()
            }
            return cls(
                id=fields["id"],
                host=fields["host"],
                pid=int(fields["pid"]),
                nexus_version=fields["nexus_version"],
                started_at=dt.datetime.fromisoformat(fields["started_at"]),
                heartbeat_at=dt.datetime.fromisoformat(fields["heartbeat_at"]),
                plugins=plugins,
            )
        except (KeyError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"malformed instance report: {exc!r}") from None

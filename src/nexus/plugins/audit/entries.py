"""Audit entries, and how an event becomes one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import orjson

from nexus.kernel.events import Event

Outcome = Literal["success", "failure", "denied"]
OUTCOMES: Final[frozenset[str]] = frozenset(get_args(Outcome))

#: What publishers say, in the three words an audit entry uses.
_SYNONYMS: Final[dict[str, Outcome]] = {
    "success": "success",
    "succeeded": "success",
    "ok": "success",
    "allowed": "success",
    "failure": "failure",
    "failed": "failure",
    "error": "failure",
    "denied": "denied",
    "forbidden": "denied",
    "throttled": "denied",
    "rejected": "denied",
}
#: A plugin operation whose plugin ended in one of these states did not succeed.
_FAILED_STATES: Final = frozenset({"failed", "blocked"})
#: Event data keys that become columns rather than details.
_COLUMNS: Final = frozenset({"actor", "resource", "target", "outcome"})

# Column sizes (see the migration): longer values are cut, rather than failing the insert.
_LIMITS: Final = {"actor": 255, "action": 255, "resource": 512, "request_id": 128, "source": 64}

#: The actor of work no user asked for (startup, background tasks).
SYSTEM_ACTOR: Final = "system"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action: who did what to which resource, how it ended, in which request."""

    id: int
    time: dt.datetime
    """When it happened, as an aware UTC datetime."""
    actor: str
    action: str
    """The event type (`auth.login.failed`) or the name given to `AuditLog.record`."""
    resource: str
    outcome: Outcome
    request_id: str | None
    """The X-Request-ID of the HTTP request that caused it, if any."""
    source: str
    """The plugin that published the event or recorded the entry."""
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (the time as an ISO 8601 string)."""
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "resource": self.resource,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "source": self.source,
            "details": self.details,
        }


def normalize_outcome(value: object) -> Outcome | None:
    """The audit outcome a publisher's word means, or None when it is not one we know."""
    if not isinstance(value, str):
        return None
    return _SYNONYMS.get(value.strip().lower())


def make_row(
    *,
    time: dt.datetime,
    actor: str | None,
    action: str,
    resource: str,
    outcome: Outcome,
    request_id: str | None,
    source: str,
    details: Mapping[str, Any],
    event_id: str | None = None,
) -> dict[str, Any]:
    """The column values of a new entry, cut to the column sizes and JSON-safe."""
    row: dict[str, Any] = {
        "time": time.astimezone(dt.UTC),
        "actor": actor or SYSTEM_ACTOR,
        "action": action,
        "resource": resource,
        "outcome": outcome,
        "request_id": request_id,
        "source": source,
        "event_id": event_id,
        "details": json_safe(details),
    }
    for column, limit in _LIMITS.items():
        value = row[column]
        if isinstance(value, str) and len(value) > limit:
            row[column] = value[:limit]
    return row


def row_from_event(event: Event) -> dict[str, Any]:
    """The entry an event makes: actor, resource and outcome come from its data."""
    data: dict[str, Any]
    if isinstance(event.data, Mapping):
        data = dict(event.data)
    elif event.data is None:
        data = {}
    else:
        data = {"data": event.data}
    resource = data.get("resource") or data.get("target")
    if not resource and event.type.startswith("nexus.plugin.") and data.get("plugin"):
        resource = f"plugin:{data['plugin']}"
    details = {key: value for key, value in data.items() if key not in _COLUMNS}
    reported = data.get("outcome")
    outcome = normalize_outcome(reported)
    if outcome is None:
        if reported is not None:
            details["reported_outcome"] = reported
            outcome = "failure"
        elif event.type.startswith("nexus.plugin.") and data.get("state") in _FAILED_STATES:
            outcome = "failure"
        else:
            outcome = "success"
    actor = data.get("actor")
    return make_row(
        time=event.datetime,
        actor=str(actor) if actor else None,
        action=event.type,
        resource=str(resource) if resource else "",
        outcome=outcome,
        request_id=event.correlation_id,
        source=event.source,
        details=details,
        event_id=event.id,
    )


def json_safe(details: Mapping[str, Any]) -> dict[str, Any]:
    """`details` as plain JSON data: anything else (datetimes, sets, objects) as text."""
    encoded = orjson.dumps(dict(details), default=_fallback, option=orjson.OPT_NON_STR_KEYS)
    result: dict[str, Any] = orjson.loads(encoded)
    return result


def _fallback(value: object) -> object:
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)

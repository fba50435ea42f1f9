"""How an event becomes an audit entry's columns."""

from __future__ import annotations

from typing import Any

import pytest

from nexus import Event
from nexus.plugins.audit.entries import row_from_event


def row(topic: str, data: Any) -> dict[str, Any]:
    return row_from_event(Event("e1", topic, "nexus", 0.0, data, None))


@pytest.mark.parametrize(
    ("topic", "data", "expected"),
    [
        ("auth.login.throttled", {"outcome": "throttled"}, ("denied", "", {})),
        ("admin.x", {"outcome": "exploded"}, ("failure", "", {"reported_outcome": "exploded"})),
        (
            "admin.user.changed",
            {"target": "user:7", "by": "form"},
            ("success", "user:7", {"by": "form"}),
        ),
        (
            "nexus.plugin.enable",
            {"plugin": "notes", "state": "failed", "actor": None},
            ("failure", "plugin:notes", {"plugin": "notes", "state": "failed"}),
        ),
        ("admin.ping", "pong", ("success", "", {"data": "pong"})),
    ],
)
def test_outcome_resource_and_details_come_from_the_event_data(
    topic: str, data: Any, expected: tuple[str, str, dict[str, Any]]
) -> None:
    """Outcome words are normalised, resource falls back to target or the plugin, rest is details."""
    entry = row(topic, data)
    assert (entry["outcome"], entry["resource"], entry["details"]) == expected
    assert entry["actor"] == "system"

"""The desired state and instance reports as stored in Redis, and what the plugin protects."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from nexus.errors import ConfigError
from nexus.kernel.lifecycle import PluginState
from nexus.kernel.records import PluginStatus
from nexus.plugins.cluster import (
    ClusterSettings,
    DesiredPlugin,
    InstanceReport,
    PluginReport,
    protected_plugins,
)
from nexus.testing import build_config


def test_desired_state_reads_what_the_lua_script_writes() -> None:
    """A stored entry comes back with every field; missing counters default to 0."""
    entry = DesiredPlugin.from_json(
        '{"enabled": false, "version": "2.0", "generation": 3, "reloads": 1, '
        '"actor": "ada", "updated_at": 1700000000.5}'
    )
    assert entry == DesiredPlugin(False, "2.0", 3, 1, "ada", 1700000000.5)
    assert DesiredPlugin.from_json(json.dumps(entry.as_dict())) == entry
    assert DesiredPlugin.from_json("{}") == DesiredPlugin()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "not JSON"),
        ("[1]", "a JSON object was expected, got list"),
        ('{"enabled": "yes"}', "'enabled' must be true, false or null"),
        ('{"version": 2}', "'version' must be a string or null"),
        ('{"generation": -1}', "'generation' must be a whole number >= 0"),
        ('{"reloads": true}', "'reloads' must be a whole number >= 0"),
    ],
)
def test_malformed_desired_state_is_refused(text: str, message: str) -> None:
    """An entry written by hand wrongly raises ValueError saying which field is wrong."""
    with pytest.raises(ValueError, match=message):
        DesiredPlugin.from_json(text)


def test_instance_reports_round_trip_through_hash_fields() -> None:
    """A report stored as hash fields reads back equal; a broken one raises ValueError."""
    moment = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    report = InstanceReport(
        id="web-1",
        host="web",
        pid=42,
        nexus_version="0.1.0",
        started_at=moment,
        heartbeat_at=moment + dt.timedelta(seconds=5),
        plugins={"notes": PluginReport("active", "1.2.0", True, 3, None)},
    )
    assert InstanceReport.from_fields(report.to_fields()) == report
    assert report.as_dict()["plugins"]["notes"] == {
        "state": "active",
        "version": "1.2.0",
        "enabled": True,
        "generation": 3,
        "problem": None,
    }
    broken = {**report.to_fields(), "plugins": "{"}
    with pytest.raises(ValueError, match="malformed instance report"):
        InstanceReport.from_fields(broken)
    with pytest.raises(ValueError, match="malformed instance report"):
        InstanceReport.from_fields({"id": "x"})


def status(name: str, requires: dict[str, str], optional: dict[str, str]) -> PluginStatus:
    return PluginStatus(
        name=name,
        state=PluginState.ACTIVE,
        version="1.0",
        description="",
        origin="test",
        enabled=True,
        requires=requires,
        optional=optional,
        failure=None,
        blocked_reason=None,
        boot_seconds=None,
        last_error=None,
    )


def test_protected_plugins_are_everything_the_cluster_plugin_uses() -> None:
    """The cluster plugin protects itself and its required and optional dependencies, deeply."""
    statuses = {
        "cluster": status("cluster", {"database": ""}, {"auth": ""}),
        "auth": status("auth", {"database": ""}, {"audit": ""}),
        "audit": status("audit", {}, {}),
        "database": status("database", {}, {}),
        "notes": status("notes", {"auth": ""}, {}),
    }
    assert protected_plugins("cluster", statuses) == {"cluster", "auth", "audit", "database"}


def test_settings_are_checked() -> None:
    """A non-Redis URL or a report TTL not longer than the heartbeat is refused."""
    ok = ClusterSettings(redis_url="redis://127.0.0.1:6379/0", heartbeat_interval=2)  # type: ignore[arg-type]
    assert (ok.ttl, ok.reconcile_every) == (6.0, 2.0)
    with pytest.raises(ValueError, match="must start with redis://"):
        ClusterSettings(redis_url="http://127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"report_ttl \(1 s\) must be longer than heartbeat"):
        ClusterSettings(redis_url="redis://x", heartbeat_interval=1, report_ttl=1)  # type: ignore[arg-type]
    config = build_config(
        {"plugins": {"cluster": {"redis_url": "redis://x", "heartbeat_interval": 0}}}
    )
    with pytest.raises(ConfigError, match=r"plugins\.cluster\.heartbeat_interval"):
        config.validate_plugin("cluster", ClusterSettings)

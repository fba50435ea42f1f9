"""`nexus plugins list|graph|check`: judged from manifests alone, without running plugin code."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import TRIPWIRE, Nexus, Project
from tests.conftest import PluginWriter


def install_mixed(project: Project) -> None:
    """One plugin of every kind: startable, blocked, disabled and invalid, all tripwired."""
    write = project.plugins.write
    write("database", TRIPWIRE, version="1.4.0", description="Storage")
    write("users", TRIPWIRE, version="2.0.0", requires={"database": ">=1.0,<2"})
    write("billing", TRIPWIRE, requires={"payments": ">=1.0"})
    write("legacy", TRIPWIRE)
    write("broken", TRIPWIRE, version="1.x")
    project.configure(plugins={"legacy": {"enabled": False}})


def test_list_shows_every_plugin_with_state_and_reason(project: Project, nexus: Nexus) -> None:
    """The table lists each plugin's version, state, origin and reason, and runs no plugin code."""
    install_mixed(project)
    result = nexus("plugins", "list", "--config", str(project.config))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "STATE", "ORIGIN", "REASON"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["database"].split() == ["database", "1.4.0", "validated", "plugins/database"]
    assert rows["users"].split() == ["users", "2.0.0", "validated", "plugins/users"]
    assert rows["legacy"].split()[:4] == ["legacy", "1.0.0", "disabled", "plugins/legacy"]
    assert rows["billing"].split()[:4] == ["billing", "1.0.0", "blocked", "plugins/billing"]
    assert "needs 'payments', which is not installed" in rows["billing"]
    assert rows["broken"].split()[:4] == ["broken", "-", "failed(validate)", "plugins/broken"]
    assert "version: '1.x' is not a PEP 440 version" in rows["broken"]
    # Columns line up: every state starts where the STATE header does.
    column = lines[0].index("STATE")
    assert {line.split()[0]: line[column:].split()[0] for line in lines[1:]} == {
        "billing": "blocked",
        "broken": "failed(validate)",
        "database": "validated",
        "legacy": "disabled",
        "users": "validated",
    }
    assert not any(project.was_imported(name) for name in rows)


def test_list_json_is_stable_for_scripts(project: Project, nexus: Nexus) -> None:
    """--json gives one object per plugin with state, version, origin, reason and failure."""
    install_mixed(project)
    result = nexus("plugins", "list", "--config", str(project.config), "--json")
    assert result.exit_code == 0
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert list(plugins) == ["billing", "broken", "database", "legacy", "users"]
    assert plugins["users"] == {
        "name": "users",
        "version": "2.0.0",
        "state": "validated",
        "origin": "plugins/users",
        "enabled": True,
        "reason": None,
        "description": "",
        "requires": {"database": ">=1.0,<2"},
        "optional": {},
        "after": [],
        "failure": None,
        "problems": [],
    }
    assert plugins["legacy"]["state"] == "disabled" and plugins["legacy"]["enabled"] is False
    assert plugins["billing"]["state"] == "blocked"
    broken = plugins["broken"]
    assert broken["state"] == "failed" and broken["failure"]["stage"] == "validate"
    assert broken["problems"] == [
        {
            "kind": "manifest",
            "plugin": "broken",
            "location": "plugins/broken/manifest.json",
            "path": "version",
            "message": "'1.x' is not a PEP 440 version; use e.g. '1.0.0' or '0.3.1rc1'",
        }
    ]
    assert not any(project.was_imported(name) for name in plugins)


def test_list_without_plugins_says_how_to_add_them(project: Project, nexus: Nexus) -> None:
    """An installation without plugins says where plugins come from."""
    result = nexus("plugins", "list", "--config", str(project.config))
    assert result.exit_code == 0
    assert "No plugins found. Add plugin directories to plugin_paths" in result.stdout


def test_graph_text_shows_start_order_and_what_cannot_start(project: Project, nexus: Nexus) -> None:
    """Text mode lists the start order with dependencies, then the plugins that will not start."""
    install_mixed(project)
    project.plugins.write("audit", TRIPWIRE)
    project.plugins.write(
        "api", TRIPWIRE, requires={"users": ""}, optional={"cache": ">=1"}, after=["audit"]
    )
    result = nexus("plugins", "graph", "--config", str(project.config))
    assert result.exit_code == 0, result.output
    text = result.stdout
    order = text.split("Not started:")[0]
    assert [line.split()[1] for line in order.splitlines()[2:] if line.strip()] == [
        "audit",
        "database",
        "users",
        "api",
    ]
    assert "requires users; optional cache>=1; after audit" in order
    assert "requires database>=1.0,<2" in order
    waiting = text.split("Not started:")[1]
    assert "billing  blocked" in waiting and "needs 'payments'" in waiting
    assert "legacy   disabled" in waiting
    assert "broken   failed(validate)" in waiting


def test_graph_dot_styles_edges_by_kind_and_marks_blocked(project: Project, nexus: Nexus) -> None:
    """Dot output draws requires solid, optional dashed, after dotted; blocked plugins carry why."""
    write = project.plugins.write
    write("db", TRIPWIRE)
    write("cache", TRIPWIRE)
    write("audit", TRIPWIRE)
    write("api", TRIPWIRE, requires={"db": ">=1"}, optional={"cache": ""}, after=["audit"])
    write("orphan", TRIPWIRE, requires={"ghost": ""})
    result = nexus("plugins", "graph", "--config", str(project.config), "--format", "dot")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "digraph nexus_plugins {" and lines[-1] == "}"
    assert '  "api" -> "db" [style=solid, label=">=1"];' in lines
    assert '  "api" -> "cache" [style=dashed];' in lines
    assert '  "api" -> "audit" [style=dotted];' in lines
    assert '  "orphan" -> "ghost" [style=solid];' in lines
    orphan = next(line for line in lines if line.startswith('  "orphan" ['))
    assert "blocked: needs 'ghost', which is not installed" in orphan and "color=red" in orphan
    assert any(line.startswith('  "ghost" [') and "not installed" in line for line in lines)
    assert not any(project.was_imported(name) for name in ("db", "api", "orphan"))


def test_graph_mermaid_styles_edges_by_kind_and_marks_blocked(
    project: Project, nexus: Nexus
) -> None:
    """Mermaid output: solid arrows for requires, dashed for optional, a dotted style for after."""
    write = project.plugins.write
    write("db", TRIPWIRE)
    write("cache", TRIPWIRE)
    write("audit", TRIPWIRE)
    write("api", TRIPWIRE, requires={"db": ">=1"}, optional={"cache": ""}, after=["audit"])
    write("orphan", TRIPWIRE, requires={"ghost": ""})
    result = nexus("plugins", "graph", "--config", str(project.config), "--format", "mermaid")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart LR"
    edges = [line.strip() for line in lines if "p_api -" in line or "p_orphan -" in line]
    assert edges == [
        "p_api -.->|after| p_audit",
        "p_api -.->|optional| p_cache",
        "p_api -->|#gt;=1| p_db",
        "p_orphan --> p_ghost",
    ]
    assert "  linkStyle 0 stroke-dasharray:2 4" in lines
    assert any(
        line.startswith("  p_orphan[\"orphan 1.0.0<br/>blocked: needs 'ghost'") for line in lines
    )
    assert "  class p_orphan blocked" in lines
    assert "  class p_ghost missing" in lines


def test_check_clean_installation_exits_0(project: Project, nexus: Nexus) -> None:
    """A valid installation passes with its start order, and no plugin code runs."""
    project.plugins.write("db", TRIPWIRE)
    project.plugins.write("api", TRIPWIRE, requires={"db": ">=1.0"})
    result = nexus("plugins", "check", "--config", str(project.config))
    assert result.exit_code == 0, result.output
    assert result.stdout == "OK: 2 plugins checked; start order: db -> api\n"
    assert not project.was_imported("db") and not project.was_imported("api")


def install_broken(project: Project) -> None:
    """An invalid manifest, a version mismatch, a missing plugin, a cycle and a knock-on block."""
    write = project.plugins.write
    write("broken", TRIPWIRE, version="1.x", entry="plugin")
    write("db", TRIPWIRE, version="1.0.0")
    write("users", TRIPWIRE, requires={"db": ">=2"})
    write("api", TRIPWIRE, requires={"users": ""})
    write("billing", TRIPWIRE, requires={"payments": ""})
    write("auth", TRIPWIRE, requires={"sessions": ""})
    write("sessions", TRIPWIRE, requires={"auth": ""})


ALL = ("broken", "db", "users", "api", "billing", "auth", "sessions")


def test_check_reports_every_problem_and_exits_1(project: Project, nexus: Nexus) -> None:
    """Manifest errors (file, field), missing and mismatched dependencies and whole cycles."""
    install_broken(project)
    result = nexus("plugins", "check", "--config", str(project.config))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "Found 6 problems:",
        "  - plugins/broken/manifest.json: version: '1.x' is not a PEP 440 version; use e.g. '1.0.0' or '0.3.1rc1'",
        "  - plugins/broken/manifest.json: entry: 'plugin' is not 'module:Class'; use e.g. 'plugin:UserManager' for class UserManager in plugin.py",
        "  - Dependency cycle: auth -> sessions -> auth. Break it by removing one of these requires/optional/after entries.",
        "  - plugins/api/manifest.json: requires: plugin 'api' needs 'users', which is blocked: users needs db>=2, found 1.0.0",
        "  - plugins/billing/manifest.json: requires: plugin 'billing' needs 'payments', which is not installed. Installed plugins: api, auth, broken, db, sessions, users. Install it or remove it from 'requires'.",
        "  - plugins/users/manifest.json: requires: plugin 'users' needs db>=2, found 1.0.0",
    ]
    assert not any(project.was_imported(name) for name in ALL)


def test_check_json_lists_problems_by_kind(project: Project, nexus: Nexus) -> None:
    """--json reports ok=false and each problem with kind, plugin, location and key path."""
    install_broken(project)
    result = nexus("plugins", "check", "--config", str(project.config), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["plugins"] == 7 and report["order"] == ["db"]
    assert [(p["kind"], p["plugin"], p["path"]) for p in report["problems"]] == [
        ("manifest", "broken", "version"),
        ("manifest", "broken", "entry"),
        ("cycle", "auth", ""),
        ("dependency", "api", "requires"),
        ("dependency", "billing", "requires"),
        ("dependency", "users", "requires"),
    ]
    assert report["problems"][5]["location"] == "plugins/users/manifest.json"
    assert report["warnings"] == []
    assert not any(project.was_imported(name) for name in ALL)


def test_check_warns_about_unusable_optional_dependency(project: Project, nexus: Nexus) -> None:
    """An optional dependency in a version the plugin does not accept warns but passes."""
    project.plugins.write("cache", TRIPWIRE, version="1.0.0")
    project.plugins.write("api", TRIPWIRE, optional={"cache": ">=2"})
    result = nexus("plugins", "check", "--config", str(project.config))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "1 warning:",
        "  - plugins/api/manifest.json: optional: plugin 'api' can use cache>=2, but cache 1.0.0 is installed; it will start without it",
        "OK: 2 plugins checked; start order: api -> cache",
    ]


def test_check_reports_nexus_version_mismatch(project: Project, nexus: Nexus) -> None:
    """A plugin for another Nexus version is a problem pointing at the manifest's nexus field."""
    project.plugins.write("future", TRIPWIRE, nexus=">=99")
    result = nexus("plugins", "check", "--config", str(project.config), "--json")
    assert result.exit_code == 1
    [problem] = json.loads(result.stdout)["problems"]
    assert problem["path"] == "nexus"
    assert problem["message"].startswith("plugin 'future' needs nexus>=99, but this is nexus ")


def test_config_from_environment_variable(
    project: Project, nexus: Nexus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --config, NEXUS_CONFIG names the configuration file."""
    project.plugins.write("db", TRIPWIRE)
    monkeypatch.setenv("NEXUS_CONFIG", str(project.config))
    monkeypatch.chdir(project.root.parent)
    result = nexus("plugins", "list", "--json")
    assert [p["name"] for p in json.loads(result.stdout)["plugins"]] == ["db"]


def test_env_overlay_applies(project: Project, nexus: Nexus) -> None:
    """--env selects the overlay, which may disable a plugin."""
    project.plugins.write("db", TRIPWIRE)
    project.overlay("staging", plugins={"db": {"enabled": False}})
    result = nexus("plugins", "list", "--config", str(project.config), "--env", "staging", "--json")
    assert json.loads(result.stdout)["plugins"][0]["state"] == "disabled"


def test_missing_config_file_is_a_usage_error(project: Project, nexus: Nexus) -> None:
    """A --config file that does not exist exits 2 with one line on stderr, no traceback."""
    result = nexus("plugins", "check", "--config", "nope.yaml")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert (
        result.stderr == "nexus: Configuration file 'nope.yaml' (from --config) does not exist.\n"
    )


def test_invalid_config_is_a_usage_error(project: Project, nexus: Nexus) -> None:
    """A configuration that does not load exits 2 listing every problem with file:line."""
    project.configure(server={"port": "eighty"}, plugin_path=["oops"])
    result = nexus("plugins", "list", "--config", str(project.config))
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("nexus: Invalid configuration (2 problems):\n")
    assert "unknown section 'plugin_path'" in result.stderr
    assert "did you mean 'plugin_paths'?" in result.stderr
    assert "server.port: Input should be a valid integer, got 'eighty'" in result.stderr
    assert f"{project.config}:" in result.stderr


def test_duplicate_plugin_names_both_sources(project: Project, nexus: Nexus) -> None:
    """The same plugin name in two plugin directories fails validation naming both."""
    project.plugins.write("db", TRIPWIRE)
    PluginWriter(project.root / "vendor").write("db", TRIPWIRE)
    project.configure(plugin_paths=["plugins", "vendor"])
    listed = nexus("plugins", "list", "--config", str(project.config), "--json")
    [db] = json.loads(listed.stdout)["plugins"]
    assert db["state"] == "failed"
    assert db["reason"] == (
        "Plugin 'db' is provided twice: by plugins/db and by vendor/db. "
        "Remove or rename one of them."
    )
    checked = nexus("plugins", "check", "--config", str(project.config))
    assert checked.exit_code == 1
    assert "  - Plugin 'db' is provided twice: by plugins/db and by vendor/db." in checked.stdout


def test_graph_text_when_nothing_can_start(project: Project, nexus: Nexus) -> None:
    """With no startable plugin the text graph says so, and still lists the others."""
    project.plugins.write("lonely", TRIPWIRE, requires={"ghost": ""})
    result = nexus("plugins", "graph", "--config", str(project.config))
    assert result.stdout.splitlines()[:2] == ["Start order:", "(no plugin can start)"]
    assert "lonely  blocked  needs 'ghost'" in result.stdout

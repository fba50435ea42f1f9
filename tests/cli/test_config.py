"""`nexus config show|validate`: the effective configuration, redacted, and all its problems."""

from __future__ import annotations

import json

import yaml

from tests.cli.conftest import TRIPWIRE, Nexus, Project

CONFIGURED = """
from pydantic import BaseModel, ConfigDict, SecretStr
from nexus import Plugin

class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_users: int = 10
    api_token: SecretStr

class Main(Plugin):
    Config = Settings
"""


def test_show_prints_merged_yaml_with_secrets_redacted(project: Project, nexus: Nexus) -> None:
    """The YAML shows every layer merged (base, overlay, env), and never a secret."""
    project.configure(
        app={"name": "Shop"},
        plugins={
            "users": {"api_token": "s3cr3t-value", "max_users": 5},
            "db": {"url": "postgresql://app:hunter2@db/shop"},
        },
    )
    project.overlay("staging", server={"port": 9000})
    result = nexus("config", "show", "--config", str(project.config), "--env", "staging")
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["app"] == {"name": "Shop", "environment": "staging"}
    assert shown["server"]["port"] == 9000
    assert shown["plugins"]["users"] == {"api_token": "**********", "max_users": 5}
    assert shown["plugins"]["db"]["url"] == "postgresql://app:**********@db/shop"
    assert shown["http"]["cors"]["allow_origins"] == []
    assert "s3cr3t-value" not in result.stdout and "hunter2" not in result.stdout


def test_show_json(project: Project, nexus: Nexus) -> None:
    """--json prints the same redacted configuration as JSON."""
    project.configure(plugins={"users": {"password": "hunter2"}})
    result = nexus("config", "show", "--config", str(project.config), "--json")
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert shown["plugins"] == {"users": {"password": "**********"}}
    assert shown["plugin_paths"] == [str(project.root / "plugins")]


def test_show_invalid_config_exits_2(project: Project, nexus: Nexus) -> None:
    """An invalid configuration cannot be shown: exit 2 with the problems on stderr."""
    project.configure(server={"port": 0})
    result = nexus("config", "show", "--config", str(project.config))
    assert result.exit_code == 2
    assert "server.port: Input should be greater than or equal to 1, got 0" in result.stderr


def test_validate_passes_valid_configuration(project: Project, nexus: Nexus) -> None:
    """A valid configuration with valid plugin sections exits 0 naming what was checked."""
    project.plugins.write("users", CONFIGURED)
    project.plugins.write("plain")
    project.configure(plugins={"users": {"api_token": "t"}})
    result = nexus("config", "validate", "--config", str(project.config))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"OK: {project.config} is valid (environment development); "
        "checked the configuration of 2 plugins: plain, users\n"
    )


def test_validate_reports_every_plugin_problem_with_file_line_and_key(
    project: Project, nexus: Nexus
) -> None:
    """Problems of several plugins are reported at once, each with file:line and key path."""
    project.plugins.write("users", CONFIGURED)
    project.plugins.write("plain")
    project.plugins.write("off", CONFIGURED)
    project.config.write_text(
        "plugin_paths: [plugins]\n"
        "plugins:\n"
        "  users:\n"
        "    max_users: lots\n"
        "    colour: blue\n"
        "  plain:\n"
        "    verbose: true\n"
        "  off:\n"
        "    enabled: false\n"
    )
    result = nexus("config", "validate", "--config", str(project.config))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "Invalid configuration (4 problems):",
        f"  - {project.config}:7: plugins.plain: plugin 'plain' takes no configuration, remove 'verbose' (only 'enabled' is allowed here)",
        f"  - {project.config}:4: plugins.users.max_users: Input should be a valid integer, got 'lots'",
        f"  - {project.config}:3: plugins.users.api_token: Field required; add it to the configuration file or set NEXUS__PLUGINS__USERS__API_TOKEN",
        f"  - {project.config}:5: plugins.users.colour: unknown key 'colour'; known keys: api_token, max_users",
    ]


def test_validate_reports_import_failures(project: Project, nexus: Nexus) -> None:
    """A plugin whose code cannot be imported is a problem naming the plugin and the error."""
    project.plugins.write("users", "def broken(:\n")
    project.plugins.write("boom", TRIPWIRE)
    result = nexus("config", "validate", "--config", str(project.config), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    problems = {p["plugin"]: p for p in report["problems"]}
    assert problems["users"]["kind"] == "import"
    assert problems["users"]["location"] == "plugins/users/manifest.json"
    assert "Syntax error" in problems["users"]["message"]
    assert "plugin.py:1" in problems["users"]["message"]
    assert "raised RuntimeError: this plugin's code was imported" in problems["boom"]["message"]


def test_validate_warns_about_sections_for_uninstalled_plugins(
    project: Project, nexus: Nexus
) -> None:
    """A section for a plugin that is not installed is a warning with a spelling suggestion."""
    project.plugins.write("users", CONFIGURED)
    project.plugins.write("broken", version="bad")
    project.configure(plugins={"users": {"api_token": "t"}, "user": {"max_users": 1}})
    result = nexus("config", "validate", "--config", str(project.config), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["files"] == [str(project.config)]
    assert report["environment"] == "development"
    assert report["plugins_checked"] == ["users"]
    assert [(w["plugin"], w["location"], w["path"]) for w in report["warnings"]] == [
        ("user", f"{project.config}:7", "plugins.user"),
        ("broken", "plugins/broken", ""),
    ]
    assert "did you mean 'users'?" in report["warnings"][0]["message"]
    assert "its manifest is invalid" in report["warnings"][1]["message"]


def test_validate_reports_base_config_problems_with_exit_1(project: Project, nexus: Nexus) -> None:
    """When the configuration itself does not load, validate lists its problems and exits 1."""
    project.config.write_text("server:\n  port: 70000\nplugin_paths: [plugins]\nextra: 1\n")
    result = nexus("config", "validate", "--config", str(project.config))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == "Invalid configuration (2 problems):"
    assert f"{project.config}:4: extra: unknown section 'extra'" in result.stdout
    assert f"{project.config}:2: server.port: Input should be less than or equal to 65535" in (
        result.stdout
    )


def test_validate_missing_file_exits_2(project: Project, nexus: Nexus) -> None:
    """A configuration file that does not exist is a usage error, not a validation result."""
    result = nexus("config", "validate", "--config", "missing.yaml")
    assert result.exit_code == 2
    assert result.stderr == (
        "nexus: Configuration file 'missing.yaml' (from --config) does not exist.\n"
    )


def test_validate_rejects_an_entry_that_is_not_a_plugin(project: Project, nexus: Nexus) -> None:
    """An entry naming something other than a Plugin subclass is a problem at its manifest."""
    project.plugins.write("odd", "class Main:\n    pass\n")
    result = nexus("config", "validate", "--config", str(project.config))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "Invalid configuration (1 problem):",
        "  - plugins/odd/manifest.json: entry: plugin:Main is not a nexus.Plugin subclass",
    ]

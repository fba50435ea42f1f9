"""`nexus doctor`: one OK / WARN / FAIL line per check, exit 1 when anything fails."""

from __future__ import annotations

import json
import sys

import pytest

from nexus.cli.checkup import is_placeholder, is_secret_key
from tests.cli.conftest import Nexus, Project

SECRETIVE = """
from pydantic import BaseModel, SecretStr
from nexus import Plugin

class Smtp(BaseModel):
    password: SecretStr

class Settings(BaseModel):
    signing_key: SecretStr
    smtp: Smtp | None = None
    fallback: SecretStr = SecretStr("unused")
    note: str = ""

class Main(Plugin):
    Config = Settings
"""


def statuses(stdout: str) -> list[tuple[str, str]]:
    """(status, check name) of each checklist line."""
    return [
        (line.split()[0], line[6:].split("  ")[0].strip())
        for line in stdout.splitlines()
        if line.startswith(("OK ", "WARN", "FAIL"))
    ]


def line_of(project: Project, text: str) -> int:
    """The line number of the first line of nexus.yaml containing `text`."""
    lines = project.config.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_healthy_development_install_passes(project: Project, nexus: Nexus) -> None:
    """A sound installation gets only OK lines and exits 0."""
    project.plugins.write("db")
    project.plugins.write("api", requires={"db": ""})
    result = nexus("doctor", "--config", str(project.config))
    assert result.exit_code == 0, result.output
    assert statuses(result.stdout) == [
        ("OK", "config"),
        ("OK", "manifests"),
        ("OK", "graph"),
        ("OK", "plugin config"),
        ("OK", "data_dir"),
        ("OK", "extras"),
    ]
    assert "dependencies resolve; start order: db, api" in result.stdout
    assert f"{project.root / 'data'} will be created" in result.stdout
    assert result.stdout.endswith("\nnexus doctor: all checks passed\n")


def test_broken_install_fails_each_affected_check(project: Project, nexus: Nexus) -> None:
    """Invalid manifests, unresolvable dependencies and bad plugin config each FAIL; exit 1."""
    project.plugins.write("broken", version="nope")
    project.plugins.write("lonely", requires={"ghost": ""})
    project.plugins.write("strict", SECRETIVE)
    project.configure(plugins={"strict": {"signing_key": "k", "note": ["not", "text"]}})
    result = nexus("doctor", "--config", str(project.config))
    assert result.exit_code == 1
    assert statuses(result.stdout) == [
        ("OK", "config"),
        ("FAIL", "manifests"),
        ("FAIL", "graph"),
        ("FAIL", "plugin config"),
        ("OK", "data_dir"),
        ("OK", "extras"),
    ]
    assert "plugins/broken/manifest.json: version: 'nope' is not a PEP 440 version" in (
        result.stdout
    )
    assert "plugin 'lonely' needs 'ghost', which is not installed" in result.stdout
    assert "plugins.strict.note: Input should be a valid string, got a list" in result.stdout
    assert result.stdout.endswith("\nnexus doctor: 3 failures, 0 warnings\n")


def test_unloadable_config_fails_and_skips_dependent_checks(project: Project, nexus: Nexus) -> None:
    """A configuration that does not load is one FAIL with its problems; exit 1."""
    project.configure(server={"port": "http"})
    result = nexus("doctor", "--config", str(project.config))
    assert result.exit_code == 1
    assert statuses(result.stdout) == [("FAIL", "config"), ("OK", "extras")]
    assert "server.port: Input should be a valid integer, got 'http'" in result.stdout


def test_no_config_file_warns(project: Project, nexus: Nexus) -> None:
    """Without --config or NEXUS_CONFIG the defaults are used, with a warning."""
    result = nexus("doctor")
    assert result.exit_code == 0
    assert statuses(result.stdout)[0] == ("WARN", "config")
    assert "no configuration file (give --config or set NEXUS_CONFIG)" in result.stdout
    assert result.stdout.endswith("\nnexus doctor: 0 failures, 1 warning\n")


def test_missing_config_file_exits_2(project: Project, nexus: Nexus) -> None:
    """A --config path that does not exist is a usage error."""
    result = nexus("doctor", "--config", "absent.yaml")
    assert result.exit_code == 2
    assert "Configuration file 'absent.yaml' (from --config) does not exist." in result.stderr


def test_data_dir_that_cannot_be_created_fails(project: Project, nexus: Nexus) -> None:
    """A data_dir below a regular file can never be created."""
    (project.root / "afile").write_text("")
    project.configure(data_dir="afile/data")
    result = nexus("doctor", "--config", str(project.config))
    assert result.exit_code == 1
    assert ("FAIL", "data_dir") in statuses(result.stdout)
    assert f"{project.root / 'afile'} is not a directory" in result.stdout


def test_existing_data_dir_is_checked_by_writing(project: Project, nexus: Nexus) -> None:
    """An existing data_dir is reported writable after a real write."""
    (project.root / "data").mkdir()
    result = nexus("doctor", "--config", str(project.config))
    assert f"{project.root / 'data'} is writable" in result.stdout
    assert list((project.root / "data").iterdir()) == []  # the probe file is gone


def test_missing_performance_extras_only_warn(
    project: Project, nexus: Nexus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvloop or httptools missing is a WARN naming the extra to install, not a failure."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes the module unimportable
    result = nexus("doctor", "--config", str(project.config))
    assert result.exit_code == 0
    assert ("WARN", "extras") in statuses(result.stdout)
    assert "performance extras missing: install uvicorn[standard]" in result.stdout
    assert "uvloop (a faster event loop) is not installed" in result.stdout


def test_production_rejects_open_cors_debug_and_placeholder_secrets(
    project: Project, nexus: Nexus
) -> None:
    """In production, CORS '*', debug flags, empty or placeholder secrets and unset ones FAIL."""
    project.plugins.write("mailer", SECRETIVE)
    project.configure(
        app={"environment": "production"},
        http={"cors": {"allow_origins": ["*"]}, "trusted_hosts": ["shop.example.com"]},
        plugins={
            "mailer": {"signing_key": "changeme", "smtp": {"password": ""}, "debug": True},
            "other": {"api_token": "", "enabled": False},
            "cache": {"url": "redis://cache", "auth_token": "<your token>"},
        },
    )
    result = nexus("doctor", "--config", str(project.config), "--json")
    assert result.exit_code == 1
    checks = json.loads(result.stdout)["checks"]
    production = [c for c in checks if c["name"] in ("production", "secrets")]
    assert [(c["status"], c["name"]) for c in production] == [
        ("FAIL", "production"),
        ("FAIL", "secrets"),
    ]
    unsafe = production[0]["details"]
    assert any(d.startswith("http.cors.allow_origins allows every origin") for d in unsafe)
    assert any(d.startswith("plugins.mailer.debug is True") for d in unsafe)
    where = f"{project.config}:{{}}".format
    assert production[1]["details"] == [
        f"plugins.cache.auth_token is empty or a placeholder ({where(line_of(project, 'auth_token'))})",
        f"plugins.mailer.signing_key is empty or a placeholder ({where(line_of(project, 'signing_key'))})",
        f"plugins.mailer.smtp.password is empty or a placeholder ({where(line_of(project, 'password'))})",
    ]


def test_production_requires_declared_secrets(project: Project, nexus: Nexus) -> None:
    """A SecretStr without default that a plugin declares must be set in production."""
    project.plugins.write("mailer", SECRETIVE.replace("smtp: Smtp | None = None", "smtp: Smtp"))
    project.configure(app={"environment": "production"}, plugins={"mailer": {"smtp": {}}})
    result = nexus("doctor", "--config", str(project.config), "--json")
    assert result.exit_code == 1
    secrets = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "secrets")
    assert secrets["status"] == "FAIL"
    assert secrets["details"] == [
        "plugins.mailer.signing_key is not set: plugin 'mailer' needs it "
        "(or set NEXUS__PLUGINS__MAILER__SIGNING_KEY)",
        "plugins.mailer.smtp.password is not set: plugin 'mailer' needs it "
        "(or set NEXUS__PLUGINS__MAILER__SMTP__PASSWORD)",
    ]


def test_production_with_real_secrets_passes(project: Project, nexus: Nexus) -> None:
    """Set secrets, listed CORS origins and no debug flags pass the production checks."""
    project.plugins.write("mailer", SECRETIVE)
    project.configure(
        app={"environment": "production"},
        http={
            "cors": {"allow_origins": ["https://shop.example.com"]},
            "trusted_hosts": ["shop.example.com"],
        },
        plugins={"mailer": {"signing_key": "9f8a7c6e5d4b3a2f1e0d"}},
    )
    result = nexus("doctor", "--config", str(project.config))
    assert result.exit_code == 0, result.output
    assert ("OK", "production") in statuses(result.stdout)
    assert ("OK", "secrets") in statuses(result.stdout)
    assert "every secret is set" in result.stdout


def test_production_warns_about_turned_off_protections(project: Project, nexus: Nexus) -> None:
    """Disabled security headers or rate limits, or no trusted hosts, warn in production."""
    project.configure(
        app={"environment": "production"},
        http={"security_headers": {"enabled": False}, "rate_limit": {"enabled": False}},
    )
    result = nexus("doctor", "--config", str(project.config), "--json")
    assert result.exit_code == 0
    [warning] = [c for c in json.loads(result.stdout)["checks"] if c["status"] == "WARN"]
    assert warning["details"] == [
        "http.security_headers.enabled is false",
        "http.rate_limit.enabled is false",
        "http.trusted_hosts is empty: every Host header is served",
    ]


def test_production_checks_only_run_in_production(project: Project, nexus: Nexus) -> None:
    """The same settings in development skip the production checks."""
    project.configure(http={"cors": {"allow_origins": ["*"]}}, plugins={"x": {"debug": True}})
    result = nexus("doctor", "--config", str(project.config))
    names = [name for _, name in statuses(result.stdout)]
    assert "production" not in names and "secrets" not in names


def test_json_report_shape(project: Project, nexus: Nexus) -> None:
    """--json gives ok and every check with status, name, summary and details."""
    result = nexus("doctor", "--config", str(project.config), "--json")
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["checks"][0] == {
        "status": "OK",
        "name": "config",
        "summary": f"{project.config} loads (environment development)",
        "details": [],
    }


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("db_password", True),
        ("api_key", True),
        ("apiKey", True),
        ("signing_key", True),
        ("access_token", True),
        ("client_secret", True),
        ("private_key", True),
        ("max_tokens", False),
        ("keyspace", False),
        ("url", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    """Key names that hold secrets are recognised; look-alikes are not."""
    assert is_secret_key(key) is secret


@pytest.mark.parametrize(
    ("value", "placeholder"),
    [
        ("", True),
        ("   ", True),
        ("changeme", True),
        ("CHANGE-ME", True),
        ("<api key>", True),
        ("xxxxxx", True),
        ("**********", True),
        ("9f8a7c6e5d4b", False),
        ("correct horse battery staple", False),
    ],
)
def test_placeholders(value: str, placeholder: bool) -> None:
    """Empty and obviously fake secret values are placeholders."""
    assert is_placeholder(value) is placeholder


def test_unusable_optional_dependency_warns(project: Project, nexus: Nexus) -> None:
    """An optional dependency in an unaccepted version is a graph warning, not a failure."""
    project.plugins.write("cache", version="1.0.0")
    project.plugins.write("api", optional={"cache": ">=2"})
    result = nexus("doctor", "--config", str(project.config))
    assert result.exit_code == 0
    assert statuses(result.stdout)[2:4] == [("OK", "graph"), ("WARN", "graph")]
    assert "plugin 'api' can use cache>=2, but cache 1.0.0 is installed" in result.stdout


def test_production_needs_the_auth_signing_key(project: Project, nexus: Nexus) -> None:
    """The built-in auth plugin's signing key is optional in development but checked in production."""
    enabled = {"database": {"enabled": True}, "auth": {"enabled": True}}
    others = ("cache", "monitoring", "audit", "admin", "scheduler", "cluster")
    plugins = {**enabled, **{name: {"enabled": False} for name in others}}
    project.configure(
        app={"environment": "production"}, kernel={"entry_points": True}, plugins=plugins
    )
    result = nexus("doctor", "--config", str(project.config), "--json")
    secrets = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "secrets")
    assert secrets["status"] == "FAIL"
    assert (
        "plugins.auth.signing_key is not set: plugin 'auth' needs it "
        "(or set NEXUS__PLUGINS__AUTH__SIGNING_KEY)"
    ) in secrets["details"]
    project.configure(
        app={"environment": "production"},
        kernel={"entry_points": True},
        plugins={**plugins, "auth": {"signing_key": "q" * 44}},
    )
    result = nexus("doctor", "--config", str(project.config), "--json")
    secrets = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "secrets")
    assert not any("signing_key" in line for line in secrets.get("details") or [])

"""`nexus config show|validate`: the effective configuration, and whether it is valid."""

from __future__ import annotations

import click
import yaml

from nexus.cli._options import (
    EXIT_PROBLEMS,
    config_option,
    echo_findings,
    echo_json,
    env_option,
    exit_with,
    json_option,
    load,
    plural,
    resolve_config_path,
)
from nexus.cli.inventory import Finding, check_plugin_configs, take_inventory
from nexus.errors import ConfigError
from nexus.http.app import load_app_config
from nexus.kernel.config import NexusConfig


@click.group("config")
def config_group() -> None:
    """Show and validate the configuration."""


@config_group.command()
@config_option
@env_option
@json_option
def show(config_path: str | None, environment: str | None, as_json: bool) -> None:
    """Print the effective configuration (all layers merged), secrets redacted."""
    data = load(resolve_config_path(config_path), environment).redacted()
    if as_json:
        echo_json(data)
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


def _files(config: NexusConfig) -> str:
    return " + ".join(str(f) for f in config.files) or "built-in defaults"


@config_group.command()
@config_option
@env_option
@json_option
def validate(config_path: str | None, environment: str | None, as_json: bool) -> None:
    """Validate the configuration and every enabled plugin's section; exit 1 on problems.

    Imports each enabled plugin's entry class to read its Config model.
    """
    path = resolve_config_path(config_path)
    problems: list[Finding] = []
    warnings: list[Finding] = []
    checked: list[str] = []
    config: NexusConfig | None = None
    try:
        config = load_app_config(path, environment=environment)
    except ConfigError as exc:
        problems = [Finding("config", None, p.location, p.path, p.message) for p in exc.problems]
    if config is not None:
        inventory = take_inventory(config)
        result = check_plugin_configs(inventory)
        problems, warnings = result.problems, result.warnings
        checked = sorted(result.models)
        for name, row in inventory.rows.items():
            if row.enabled and row.source is None:
                message = (
                    f"the configuration of plugin {name!r} was not checked: its manifest is "
                    f"invalid (run `nexus plugins check`)"
                )
                warnings.append(Finding("manifest", name, row.origin, "", message))
    if as_json:
        echo_json(
            {
                "ok": not problems,
                "files": [str(f) for f in config.files] if config else [],
                "environment": config.environment if config else None,
                "plugins_checked": checked,
                "problems": [p.to_dict() for p in problems],
                "warnings": [w.to_dict() for w in warnings],
            }
        )
    else:
        if problems:
            echo_findings(f"Invalid configuration ({plural(len(problems), 'problem')})", problems)
        if warnings:
            echo_findings(plural(len(warnings), "warning").capitalize(), warnings)
        if config is not None and not problems:
            click.echo(
                f"OK: {_files(config)} is valid (environment {config.environment}); "
                f"checked the configuration of {plural(len(checked), 'plugin')}"
                + (f": {', '.join(checked)}" if checked else "")
            )
    if problems:
        exit_with(EXIT_PROBLEMS)

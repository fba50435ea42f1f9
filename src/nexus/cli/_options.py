"""Options shared by the commands, loading the configuration, and how errors are reported."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import click

from nexus.errors import ConfigError
from nexus.http.app import load_app_config
from nexus.kernel.config import NexusConfig

F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes a script can rely on.
EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1  # the command ran and found problems (check, validate, doctor)
EXIT_USAGE: Final = 2  # bad arguments, or a configuration that cannot be loaded


class CommandError(click.ClickException):
    """A usage or configuration error the user can fix: printed to stderr, exit code 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        """Print `nexus: <message>` to stderr."""
        click.echo(f"nexus: {self.format_message()}", err=True, file=file)


class FailedError(CommandError):
    """The command could not do its job (the server did not start, an operation failed): 1."""

    exit_code = EXIT_PROBLEMS


def exit_with(code: int) -> NoReturn:
    """End the command with `code` after its output was printed."""
    raise click.exceptions.Exit(code)


def config_option(function: F) -> F:
    """`--config PATH`: the base configuration file (default: $NEXUS_CONFIG)."""
    return click.option(
        "--config",
        "config_path",
        metavar="PATH",
        help="Configuration file (nexus.yaml). Default: $NEXUS_CONFIG, else built-in defaults.",
    )(function)


def env_option(function: F) -> F:
    """`--env ENV`: the environment, selecting the nexus.<env>.yaml overlay."""
    return click.option(
        "--env",
        "environment",
        metavar="ENV",
        help="Environment (e.g. production); overrides app.environment and $NEXUS_ENV.",
    )(function)


def json_option(function: F) -> F:
    """`--json`: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(function)


def resolve_config_path(option: str | None) -> Path | None:
    """The configuration file from --config or NEXUS_CONFIG; a missing file is a usage error."""
    environ = os.environ
    if option:
        path, given_by = Path(option), "--config"
    elif environ.get("NEXUS_CONFIG"):
        path, given_by = Path(environ["NEXUS_CONFIG"]), "NEXUS_CONFIG"
    else:
        return None
    if not path.is_file():
        raise CommandError(f"Configuration file {str(path)!r} (from {given_by}) does not exist.")
    return path


def load(
    path: Path | None, environment: str | None, env: Mapping[str, str] | None = None
) -> NexusConfig:
    """Load the configuration with the HTTP sections; any problem is a usage error (exit 2)."""
    try:
        return load_app_config(
            path, environment=environment, env=dict(env) if env is not None else None
        )
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def echo_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def echo_findings(title: str, findings: Sequence[object]) -> None:
    """A titled list, one item per line, on stdout."""
    click.echo(f"{title}:")
    for finding in findings:
        click.echo(f"  - {finding}")


def plural(count: int, word: str) -> str:
    """`1 problem`, `2 problems`."""
    return f"{count} {word}{'' if count == 1 else 's'}"

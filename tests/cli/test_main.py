"""The `nexus` group: help, version, error reporting and exit codes, and adding commands."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import click
import pytest

from nexus import ConfigError, NexusError, PluginStateError
from nexus._version import __version__
from nexus.cli import main, register_commands
from nexus.cli.doctor import doctor
from nexus.errors import Problem
from tests.cli.conftest import Nexus


@pytest.fixture
def extra_commands() -> Iterator[list[str]]:
    """Names of commands a test registers; removed from `nexus` afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        main.commands.pop(name, None)


def test_help_lists_the_commands(nexus: Nexus) -> None:
    """`nexus --help` names every built-in command and the exit codes."""
    result = nexus("--help")
    assert result.exit_code == 0
    listed = result.stdout.split("Commands:")[1].split()
    assert {"run", "plugins", "config", "doctor"} <= set(listed)
    assert "2 usage or configuration error" in result.stdout


def test_version(nexus: Nexus) -> None:
    """`nexus --version` prints the installed version."""
    result = nexus("--version")
    assert result.stdout == f"nexus, version {__version__}\n"


def test_unknown_command_is_a_usage_error(nexus: Nexus) -> None:
    """A typo exits 2 with click's suggestion."""
    result = nexus("doctr")
    assert result.exit_code == 2
    assert "No such command 'doctr'" in result.stderr


def test_nexus_errors_become_messages_not_tracebacks(
    nexus: Nexus, extra_commands: list[str]
) -> None:
    """A NexusError exits 1 with its message; a ConfigError exits 2; neither shows a traceback."""

    @click.command("explode")
    @click.argument("kind")
    def explode(kind: str) -> None:
        if kind == "config":
            raise ConfigError([Problem("nexus.yaml:3", "server.port", "must be a number")])
        raise PluginStateError("Plugin 'auth' is not running.")

    register_commands(explode)
    extra_commands.append("explode")
    state = nexus("explode", "state")
    assert (state.exit_code, state.stderr) == (1, "nexus: Plugin 'auth' is not running.\n")
    config = nexus("explode", "config")
    assert config.exit_code == 2
    assert config.stderr == (
        "nexus: Invalid configuration (1 problem):\n"
        "  - nexus.yaml:3: server.port: must be a number\n"
    )


def test_register_commands_adds_a_group(nexus: Nexus, extra_commands: list[str]) -> None:
    """A command group registered later is runnable as `nexus <group> <command>`."""

    @click.group("widgets")
    def widgets() -> None:
        """Manage widgets."""

    @widgets.command("count")
    def count() -> None:
        click.echo("3 widgets")

    register_commands(widgets)
    extra_commands.append("widgets")
    assert nexus("widgets", "count").stdout == "3 widgets\n"


def test_register_commands_refuses_to_replace_a_command(extra_commands: list[str]) -> None:
    """Registering a second command under an existing name raises, naming it."""
    with pytest.raises(NexusError, match="A command named 'doctor' already exists"):
        register_commands(click.Command("doctor"))
    assert main.commands["doctor"] is doctor


def test_python_dash_m_runs_the_command() -> None:
    """`python -m nexus.cli` is the `nexus` command."""
    result = subprocess.run(
        [sys.executable, "-m", "nexus.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, f"nexus, version {__version__}\n")

"""The `nexus` command group: built-in commands, error reporting, and the seam for more."""

from __future__ import annotations

from typing import Any

import click

from nexus._version import __version__
from nexus.cli._options import CommandError, FailedError
from nexus.cli.config import config_group
from nexus.cli.db import db
from nexus.cli.doctor import doctor
from nexus.cli.plugins import plugins
from nexus.cli.run import run
from nexus.cli.scaffold import new, plugin
from nexus.cli.users import users
from nexus.errors import ConfigError, NexusError


class NexusGroup(click.Group):
    """A group that reports Nexus errors as one clear message, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; a NexusError becomes exit 2 (configuration) or 1 (anything else)."""
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        except NexusError as exc:
            raise FailedError(str(exc)) from None


@click.group(cls=NexusGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nexus")
def main() -> None:
    """Nexus: run and inspect a plugin-based application.

    Exit codes: 0 success, 1 problems found (check, validate, doctor) or the command failed,
    2 usage or configuration error.
    """


def register_commands(*commands: click.Command) -> None:
    """Add commands or command groups to `nexus` (where plugin-provided commands plug in)."""
    for command in commands:
        if command.name in main.commands:
            raise NexusError(
                f"A command named {command.name!r} already exists in `nexus`; "
                f"choose another name for the new command."
            )
        main.add_command(command)


register_commands(run, plugins, config_group, doctor)
register_commands(users)
register_commands(db)
register_commands(new, plugin)

"""`nexus users create|list`: accounts of the auth plugin, without starting the application.

The database is opened as the database plugin would open it (`plugins.database`), the auth
tables are migrated, and users are created through the auth plugin's own service, so the
same password policy and hashing apply. Passwords are read from a prompt or stdin, never argv.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from nexus.cli._options import (
    CommandError,
    FailedError,
    config_option,
    echo_json,
    env_option,
    json_option,
    load,
    resolve_config_path,
)
from nexus.cli._table import render_table
from nexus.kernel.config import NexusConfig

if TYPE_CHECKING:
    from nexus.plugins.auth import Auth, AuthSettings

T = TypeVar("T")


class _Discard:
    """Events of a CLI run have no bus to go to; the command's output reports instead."""

    async def publish(self, topic: str, data: Any = None, *, priority: int = 0) -> None:
        return None


def _settings(config: NexusConfig) -> AuthSettings:
    try:
        from nexus.plugins.auth import AuthSettings
    except ImportError as exc:
        raise FailedError(str(exc)) from None
    for name in ("auth", "database"):
        if not config.plugin_enabled(name):
            raise FailedError(
                f"The {name} plugin is disabled (plugins.{name}.enabled: false); "
                f"there are no user accounts to manage."
            )
    return config.validate_plugin("auth", AuthSettings)


def _with_auth(
    config: NexusConfig, settings: AuthSettings, work: Callable[[Auth], Awaitable[T]]
) -> T:
    """Open the database, bring the auth tables up to date, and run `work` with the service."""
    try:
        from nexus.plugins.auth import Auth
        from nexus.plugins.auth.plugin import MIGRATIONS
        from nexus.plugins.auth.store import AuthStore
        from nexus.plugins.database import Database, DatabaseSettings, DatabaseURLError
    except ImportError as exc:
        raise FailedError(str(exc)) from None
    database_settings = config.validate_plugin("database", DatabaseSettings)
    # The database plugin's data directory, as the kernel gives it: <data_dir>/plugins/<name>.
    data_dir = config.data_dir / "plugins" / "database"
    try:
        database = Database.from_settings(database_settings, data_dir=data_dir)
    except DatabaseURLError as exc:
        raise CommandError(str(exc)) from None
    if database.dialect == "sqlite" and database.engine.url.database not in (None, "", ":memory:"):
        Path(str(database.engine.url.database)).parent.mkdir(parents=True, exist_ok=True)

    async def main() -> T:
        try:
            await database.ping(timeout=database_settings.connect_timeout)
            await database.initialize()
            await database.migrate("auth", MIGRATIONS)
            # Creating and listing users signs nothing: a throwaway key keeps the
            # production signing key out of this process.
            auth = Auth(
                settings,
                key=secrets.token_bytes(32),
                store=AuthStore(database.engine),
                events=_Discard(),
            )
            await auth.load_roles()
            return await work(auth)
        finally:
            await database.dispose()

    return asyncio.run(main())


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CommandError("No password on standard input: send it as the first line.")
        return line
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@click.group("users")
def users() -> None:
    """Create and list user accounts (the auth plugin)."""


@users.command()
@click.argument("username")
@click.option("--admin", is_flag=True, help="Give the user the admin role (every permission).")
@click.option("--role", "roles", multiple=True, metavar="ROLE", help="A role to give (repeat).")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (the default when it is "
    "not a terminal).",
)
@config_option
@env_option
def create(
    username: str,
    admin: bool,
    roles: tuple[str, ...],
    password_stdin: bool,
    config_path: str | None,
    environment: str | None,
) -> None:
    """Create a user; the password is prompted for (twice), or read from stdin."""
    config = load(resolve_config_path(config_path), environment)
    settings = _settings(config)
    password = _read_password(password_stdin)
    wanted = sorted({*roles, *(["admin"] if admin else [])})

    async def work(auth: Auth) -> Any:
        return await auth.create_user(username, password, roles=wanted)

    from nexus.plugins.auth import UserExistsError
    from nexus.plugins.auth.passwords import Passwords

    try:
        # Checked before any database work, so a typo costs no connection.
        Passwords(
            settings.password_hashing,
            min_length=settings.password_min_length,
            max_length=settings.password_max_length,
        ).check_policy(password)
        user = _with_auth(config, settings, work)
    except UserExistsError as exc:
        raise FailedError(str(exc)) from None
    except ValueError as exc:  # the password policy, the username, an unknown role
        raise CommandError(str(exc)) from None
    shown = ", ".join(sorted(user.roles)) or "no roles"
    click.echo(f"Created user {user.username!r} ({shown}).")


@users.command("list")
@config_option
@env_option
@json_option
def list_users(config_path: str | None, environment: str | None, as_json: bool) -> None:
    """List user accounts: username, roles, whether active, when created."""
    config = load(resolve_config_path(config_path), environment)
    settings = _settings(config)

    async def work(auth: Auth) -> list[dict[str, Any]]:
        return [user.as_dict() for user in await auth.users()]

    rows = _with_auth(config, settings, work)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No users yet. Create one with `nexus users create NAME --admin`.")
        return
    click.echo(
        render_table(
            ("USERNAME", "ROLES", "ACTIVE", "CREATED"),
            [
                (
                    row["username"],
                    ", ".join(row["roles"]) or "-",
                    "yes" if row["is_active"] else "no",
                    row["created_at"],
                )
                for row in rows
            ],
        )
    )

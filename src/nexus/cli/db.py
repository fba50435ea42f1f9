"""`nexus db upgrade|current`: the plugins' database migrations, without starting the app.

No plugin code runs: plugins are discovered and ordered from their manifests, and each enabled
plugin's `migrations/` directory (beside its manifest.json) is applied in dependency order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
    plural,
    resolve_config_path,
)
from nexus.cli._table import render_table
from nexus.cli.inventory import take_inventory
from nexus.kernel.config import NexusConfig

if TYPE_CHECKING:
    from nexus.plugins.database import Database

T = TypeVar("T")

#: Where a plugin keeps its migrations, beside its manifest.json.
MIGRATIONS_DIR = "migrations"


@dataclass(slots=True)
class _Plan:
    """The plugins whose migrations apply, in dependency order, and those left out."""

    targets: list[tuple[str, Path]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (plugin, why)


def _plan(config: NexusConfig) -> _Plan:
    inventory = take_inventory(config)
    plan = _Plan()
    startable = set(inventory.order)
    for name in inventory.order:
        source = inventory.rows[name].source
        if source is not None and source.path is not None:
            directory = source.path / MIGRATIONS_DIR
            if directory.is_dir():
                plan.targets.append((name, directory))
    for name, row in inventory.rows.items():
        if name in startable or not row.enabled or row.source is None:
            continue
        if row.source.path is not None and (row.source.path / MIGRATIONS_DIR).is_dir():
            plan.skipped.append((name, f"{row.state}: {row.reason}"))
    return plan


def _run(config: NexusConfig, work: Callable[[Database], Awaitable[T]]) -> T:
    """Open the database `plugins.database` configures (as the plugin would), run `work`."""
    try:
        from nexus.plugins.database import Database, DatabaseSettings, DatabaseURLError
    except ImportError as exc:
        raise FailedError(str(exc)) from None
    if not config.plugin_enabled("database"):
        raise FailedError(
            "The database plugin is disabled (plugins.database.enabled: false); "
            "there is no database to migrate."
        )
    settings = config.validate_plugin("database", DatabaseSettings)
    # The plugin's data directory, as the kernel gives it: <data_dir>/plugins/<name>.
    data_dir = config.data_dir / "plugins" / "database"
    try:
        database = Database.from_settings(settings, data_dir=data_dir)
    except DatabaseURLError as exc:
        raise CommandError(str(exc)) from None

    async def main() -> T:
        try:
            if not _sqlite_file_missing(database):
                await database.ping(timeout=settings.connect_timeout)
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(main())


def _sqlite_file_missing(database: Database) -> bool:
    path = database.engine.url.database
    return (
        database.dialect == "sqlite"
        and path not in (None, "", ":memory:")
        and not Path(path).exists()
    )


def _migration_names(name: str, directory: Path) -> list[str]:
    from nexus.plugins.database.migrations import find_migrations

    return [migration.name for migration in find_migrations(name, directory)]


@click.group("db")
def db() -> None:
    """Apply and inspect database migrations (the database in plugins.database)."""


@db.command()
@config_option
@env_option
def upgrade(config_path: str | None, environment: str | None) -> None:
    """Apply every enabled plugin's pending migrations, in dependency order; exit 1 on failure."""
    config = load(resolve_config_path(config_path), environment)
    plan = _plan(config)

    async def work(database: Database) -> int:
        click.echo(f"Database: {database.url}")
        if _sqlite_file_missing(database):
            Path(str(database.engine.url.database)).parent.mkdir(parents=True, exist_ok=True)
        count = 0
        from nexus.plugins.database import MigrationError

        for name, directory in plan.targets:
            applied: list[str] = []
            try:
                applied = await database.migrate(name, directory)
            except MigrationError as exc:
                applied = exc.applied  # shown before the error: those stay applied
                raise
            finally:
                for file in applied:
                    click.echo(f"  applied {name} {file}")
                count += len(applied)
        return count

    for name, why in plan.skipped:
        click.echo(f"Skipped {name}: it cannot start ({why})", err=True)
    count = _run(config, work)
    if count:
        click.echo(f"Applied {plural(count, 'migration')}.")
    else:
        click.echo(
            f"Nothing to apply: {plural(len(plan.targets), 'plugin')} with migrations, "
            f"all up to date."
        )


@db.command()
@config_option
@env_option
@json_option
def current(config_path: str | None, environment: str | None, as_json: bool) -> None:
    """Show each plugin's applied migration version and its pending migrations."""
    config = load(resolve_config_path(config_path), environment)
    plan = _plan(config)

    async def work(database: Database) -> dict[str, Any]:
        is_new = _sqlite_file_missing(database)  # do not create the file to find it empty
        applied = {} if is_new else await database.current()
        rows: list[dict[str, Any]] = []
        for name, directory in plan.targets:
            names = _migration_names(name, directory)
            pending = names if is_new else await database.pending(name, directory)
            current = applied.get(name, 0)
            rows.append(
                {"plugin": name, "current": current, "latest": len(names), "pending": pending}
            )
        for name in sorted(set(applied) - {name for name, _ in plan.targets}):
            rows.append({"plugin": name, "current": applied[name], "latest": None, "pending": []})
        return {"database": database.url, "plugins": rows}

    report = _run(config, work)
    if as_json:
        echo_json(report)
        return
    click.echo(f"Database: {report['database']}")
    if not report["plugins"]:
        click.echo("No plugin has migrations.")
        return
    click.echo(
        render_table(
            ("PLUGIN", "CURRENT", "LATEST", "PENDING"),
            [
                (
                    row["plugin"],
                    f"{row['current']:04d}",
                    "-" if row["latest"] is None else f"{row['latest']:04d}",
                    ", ".join(row["pending"]) or "-",
                )
                for row in report["plugins"]
            ],
        )
    )

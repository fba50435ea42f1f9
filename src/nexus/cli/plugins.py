"""`nexus plugins list|graph|check`: judge an installation from its manifests, running nothing."""

from __future__ import annotations

import click

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
from nexus.cli._table import render_table
from nexus.cli.diagram import GraphFormat, render
from nexus.cli.inventory import Inventory, take_inventory


def _inventory(path: str | None, environment: str | None) -> Inventory:
    return take_inventory(load(resolve_config_path(path), environment))


@click.group()
def plugins() -> None:
    """Inspect the installed plugins without running them."""


@plugins.command("list")
@config_option
@env_option
@json_option
def list_plugins(config_path: str | None, environment: str | None, as_json: bool) -> None:
    """List every discovered plugin with its state (no plugin code is run)."""
    inventory = _inventory(config_path, environment)
    rows = list(inventory.rows.values())
    if as_json:
        echo_json({"plugins": [row.to_dict() for row in rows]})
        return
    if not rows:
        click.echo("No plugins found. Add plugin directories to plugin_paths in nexus.yaml.")
        return
    click.echo(
        render_table(
            ("NAME", "VERSION", "STATE", "ORIGIN", "REASON"),
            [(r.name, r.version or "-", r.label, r.origin, r.reason or "") for r in rows],
        )
    )


@plugins.command()
@config_option
@env_option
@click.option(
    "--format",
    "form",
    type=click.Choice(["text", "dot", "mermaid"]),
    default="text",
    show_default=True,
    help="text: start order; dot: Graphviz; mermaid: Mermaid flowchart.",
)
def graph(config_path: str | None, environment: str | None, form: GraphFormat) -> None:
    """Show the dependency graph (requires solid, optional dashed, after dotted)."""
    click.echo(render(_inventory(config_path, environment), form))


@plugins.command()
@config_option
@env_option
@json_option
def check(config_path: str | None, environment: str | None, as_json: bool) -> None:
    """Validate every manifest and the dependency graph; exit 1 if anything is wrong."""
    inventory = _inventory(config_path, environment)
    problems, warnings = inventory.problems(), inventory.warnings()
    if as_json:
        echo_json(
            {
                "ok": not problems,
                "plugins": len(inventory.rows),
                "order": inventory.order,
                "problems": [p.to_dict() for p in problems],
                "warnings": [w.to_dict() for w in warnings],
            }
        )
    else:
        if problems:
            echo_findings(f"Found {plural(len(problems), 'problem')}", problems)
        if warnings:
            echo_findings(plural(len(warnings), "warning").capitalize(), warnings)
        if not problems:
            order = " -> ".join(inventory.order) or "(none)"
            click.echo(f"OK: {plural(len(inventory.rows), 'plugin')} checked; start order: {order}")
    if problems:
        exit_with(EXIT_PROBLEMS)

"""`nexus doctor`: a pre-flight checklist of OK / WARN / FAIL lines."""

from __future__ import annotations

import click

from nexus.cli._options import (
    EXIT_PROBLEMS,
    config_option,
    echo_json,
    env_option,
    exit_with,
    json_option,
    plural,
    resolve_config_path,
)
from nexus.cli.checkup import run_checkup

_COLORS = {"OK": "green", "WARN": "yellow", "FAIL": "red"}


@click.command()
@config_option
@env_option
@json_option
def doctor(config_path: str | None, environment: str | None, as_json: bool) -> None:
    """Check that the installation can start (and is fit for production); exit 1 on FAIL.

    Imports each enabled plugin's entry class to validate its configuration.
    """
    checkup = run_checkup(resolve_config_path(config_path), environment)
    if as_json:
        echo_json(
            {"ok": not checkup.failures, "checks": [check.to_dict() for check in checkup.checks]}
        )
    else:
        width = max(len(check.name) for check in checkup.checks)
        for check in checkup.checks:
            status = click.style(check.status.ljust(4), fg=_COLORS[check.status], bold=True)
            click.echo(f"{status}  {check.name.ljust(width)}  {check.summary}")
            for detail in check.details:
                click.echo(f"{'':4}  {'':{width}}  - {detail}")
        verdict = (
            f"{plural(checkup.failures, 'failure')}, {plural(checkup.warnings, 'warning')}"
            if checkup.failures or checkup.warnings
            else "all checks passed"
        )
        click.echo(f"\nnexus doctor: {verdict}")
    if checkup.failures:
        exit_with(EXIT_PROBLEMS)

"""`python -m nexus.cli`: the same as the `nexus` command."""

from __future__ import annotations

from nexus.cli import main

main(prog_name="nexus")

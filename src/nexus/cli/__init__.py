"""The `nexus` command line: run the server, inspect plugins and configuration, diagnose.

The only package that imports the CLI library (click).
"""

from __future__ import annotations

from nexus.cli.main import main, register_commands

__all__ = ["main", "register_commands"]

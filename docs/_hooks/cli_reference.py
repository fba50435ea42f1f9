"""MkDocs hook: the CLI reference page is generated from the click commands themselves.

`docs/reference/cli.md` holds the marker `<!-- nexus-cli-reference -->`; this hook replaces it
with one section per command (usage, description, options), so the page cannot drift from
`nexus --help`.
"""

from __future__ import annotations

import html
import inspect
from typing import Any

import click

MARKER = "<!-- nexus-cli-reference -->"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace the marker with the generated reference."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render_reference())


def render_reference() -> str:
    """Markdown for `nexus` and every subcommand, depth first, in alphabetical order."""
    from nexus.cli import main

    sections: list[str] = []
    _render(main, click.Context(main, info_name="nexus", **main.context_settings), sections)
    return "\n".join(sections)


def _render(command: click.Command, ctx: click.Context, sections: list[str]) -> None:
    path = ctx.command_path
    level = "#" * min(2 + path.count(" "), 4)
    pieces = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"{level} `{path}`", "", "```text", f"Usage: {path} {pieces}".rstrip(), "```", ""]
    help_text = inspect.cleandoc((command.help or "").replace("\b\n", ""))
    if help_text:
        lines += [html.escape(click.unstyle(help_text), quote=False), ""]
    options = [record for p in command.get_params(ctx) if (record := p.get_help_record(ctx))]
    if options:
        lines += ["| Option | Description |", "| --- | --- |"]
        for names, description in options:
            text = html.escape(description, quote=False).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{names}` | {text} |")
        lines.append("")
    sections.append("\n".join(lines))
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            sub = command.commands[name]
            if sub.hidden:
                continue
            _render(sub, click.Context(sub, info_name=name, parent=ctx), sections)

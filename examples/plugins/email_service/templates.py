"""Message templates, checked when the plugin starts and filled in with `string.Template`.

A template `<name>` is `<name>.txt`: a `Subject:` line, a blank line, then the plain-text body;
and optionally `<name>.html`, an HTML body. Placeholders are `$name` or `${name}`; values are
HTML-escaped in the HTML body.
"""

from __future__ import annotations

import html
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template


class TemplateError(Exception):
    """Templates that are missing or use placeholders nobody fills in."""


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A filled-in template."""

    subject: str
    text: str
    html: str | None


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """One message: a subject, a plain-text body and maybe an HTML body."""

    name: str
    subject: Template
    text: Template
    html: Template | None

    def render(self, values: Mapping[str, str]) -> RenderedMessage:
        """Fill in `values`; every placeholder the template uses must be among them."""
        # A line break in a value (a user's name) must not start a new header line.
        subject = " ".join(self.subject.substitute(values).split())
        escaped = {key: html.escape(value) for key, value in values.items()}
        return RenderedMessage(
            subject=subject,
            text=self.text.substitute(values),
            html=None if self.html is None else self.html.substitute(escaped),
        )


def load_templates(
    directory: Path, placeholders: Mapping[str, Collection[str]]
) -> dict[str, MessageTemplate]:
    """Read the templates named in `placeholders`, each allowed the placeholders listed for it.

    Raises TemplateError describing every problem found, in all templates at once.
    """
    problems: list[str] = []
    templates: dict[str, MessageTemplate] = {}
    if not directory.is_dir():
        raise TemplateError(f"The templates directory {str(directory)!r} does not exist.")
    for name, allowed in placeholders.items():
        template = _read(directory, name, problems)
        if template is None:
            continue
        parts = [("subject", template.subject), ("text", template.text)]
        if template.html is not None:
            parts.append(("html", template.html))
        for part, body in parts:
            where = f"{name}.html" if part == "html" else f"{name}.txt ({part})"
            if not body.is_valid():
                problems.append(f"{where}: a '$' that starts no placeholder; write '$$' for '$'")
            elif unknown := sorted(set(body.get_identifiers()) - set(allowed)):
                problems.append(
                    f"{where} uses {', '.join('$' + u for u in unknown)}; "
                    f"available: {', '.join('$' + a for a in sorted(allowed))}"
                )
        templates[name] = template
    if problems:
        raise TemplateError(f"Templates in {str(directory)!r}: " + "; ".join(problems) + ".")
    return templates


def _read(directory: Path, name: str, problems: list[str]) -> MessageTemplate | None:
    text_file, html_file = directory / f"{name}.txt", directory / f"{name}.html"
    if not text_file.is_file():
        problems.append(f"{name}.txt is missing")
        return None
    head, blank, body = text_file.read_text(encoding="utf-8").partition("\n\n")
    if not blank or "\n" in head or not head.startswith("Subject:"):
        problems.append(f"{name}.txt must start with a 'Subject: ...' line and a blank line")
        return None
    return MessageTemplate(
        name=name,
        subject=Template(head.removeprefix("Subject:").strip()),
        text=Template(body),
        html=Template(html_file.read_text(encoding="utf-8")) if html_file.is_file() else None,
    )

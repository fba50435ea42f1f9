"""The plugin dependency graph as text, Graphviz dot or Mermaid.

Edges point from a plugin to what it depends on: `requires` solid, `optional` dashed,
`after` dotted. Plugins that cannot start are marked with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from nexus.cli._table import render_table
from nexus.cli.inventory import Inventory

EdgeKind = Literal["requires", "optional", "after"]
GraphFormat = Literal["text", "dot", "mermaid"]


@dataclass(frozen=True, slots=True)
class Edge:
    """`plugin` depends on `target` in the way `kind` says; `spec` is the version range."""

    plugin: str
    target: str
    kind: EdgeKind
    spec: str = ""


def edges(inventory: Inventory) -> list[Edge]:
    """Every dependency declared by a valid manifest, sorted by plugin then target."""
    found: list[Edge] = []
    for name, row in inventory.rows.items():
        if row.source is None:
            continue
        manifest = row.source.manifest
        found.extend(Edge(name, dep, "requires", spec) for dep, spec in manifest.requires.items())
        found.extend(Edge(name, dep, "optional", spec) for dep, spec in manifest.optional.items())
        found.extend(Edge(name, dep, "after") for dep in manifest.after)
    return sorted(found, key=lambda e: (e.plugin, e.target, e.kind))


def _drawn(inventory: Inventory) -> Iterator[Edge]:
    """Edges worth drawing: all to installed plugins, and `requires` to missing ones."""
    for edge in edges(inventory):
        if edge.target in inventory.rows or edge.kind == "requires":
            yield edge


def render(inventory: Inventory, form: GraphFormat) -> str:
    """The graph in the requested format."""
    if form == "dot":
        return render_dot(inventory)
    if form == "mermaid":
        return render_mermaid(inventory)
    return render_text(inventory)


def _depends(inventory: Inventory, name: str) -> str:
    parts: dict[EdgeKind, list[str]] = {"requires": [], "optional": [], "after": []}
    for edge in edges(inventory):
        if edge.plugin == name:
            parts[edge.kind].append(f"{edge.target}{edge.spec}")
    return "; ".join(f"{kind} {', '.join(names)}" for kind, names in parts.items() if names)


def render_text(inventory: Inventory) -> str:
    """The start order with each plugin's dependencies, then the plugins that will not start."""
    rows = inventory.rows
    started = [
        (str(i), name, rows[name].version or "", _depends(inventory, name))
        for i, name in enumerate(inventory.order, 1)
    ]
    sections = ["Start order:"]
    if started:
        sections.append(render_table(("#", "NAME", "VERSION", "DEPENDS ON"), started))
    else:
        sections.append("(no plugin can start)")
    waiting = [row for name, row in rows.items() if name not in inventory.order]
    if waiting:
        sections += [
            "",
            "Not started:",
            render_table(
                ("NAME", "STATE", "REASON"), [(r.name, r.label, r.reason or "") for r in waiting]
            ),
        ]
    return "\n".join(sections)


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_DOT_STYLE: dict[EdgeKind, str] = {"requires": "solid", "optional": "dashed", "after": "dotted"}


def render_dot(inventory: Inventory) -> str:
    """Graphviz source: `nexus plugins graph --format dot | dot -Tsvg > plugins.svg`."""
    lines = ["digraph nexus_plugins {", "  rankdir=LR;", "  node [shape=box];"]
    for name, row in inventory.rows.items():
        label = f"{name} {row.version}" if row.version else name
        if row.state == "validated":
            lines.append(f"  {_dot_quote(name)} [label={_dot_quote(label)}];")
        else:
            label += f"\n{row.label}: {row.reason or ''}"
            color = "gray" if row.state == "disabled" else "red"
            style = f"color={color}, fontcolor={color}"
            lines.append(f"  {_dot_quote(name)} [label={_dot_quote(label)}, {style}];")
    missing = sorted({e.target for e in _drawn(inventory) if e.target not in inventory.rows})
    for name in missing:
        lines.append(
            f"  {_dot_quote(name)} [label={_dot_quote(name + chr(10) + 'not installed')}, "
            f"style=dashed, color=red, fontcolor=red];"
        )
    for edge in _drawn(inventory):
        attributes = [f"style={_DOT_STYLE[edge.kind]}"]
        if edge.spec:
            attributes.append(f"label={_dot_quote(edge.spec)}")
        lines.append(
            f"  {_dot_quote(edge.plugin)} -> {_dot_quote(edge.target)} [{', '.join(attributes)}];"
        )
    lines.append("}")
    return "\n".join(lines)


def _mermaid_text(text: str) -> str:
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def _mermaid_id(name: str) -> str:
    # A prefix keeps names such as "end" or "graph" from reading as Mermaid keywords.
    return "p_" + re.sub(r"\W", "_", name)


def _mermaid_node(name: str, *lines: str) -> str:
    label = "<br/>".join(_mermaid_text(line) for line in lines)
    return f'  {_mermaid_id(name)}["{label}"]'


def render_mermaid(inventory: Inventory) -> str:
    """A Mermaid flowchart, for Markdown pages that render Mermaid."""
    lines = ["flowchart LR"]
    classes: dict[str, list[str]] = {"blocked": [], "disabled": [], "missing": []}
    for name, row in inventory.rows.items():
        title = f"{name} {row.version}" if row.version else name
        if row.state == "validated":
            lines.append(_mermaid_node(name, title))
        else:
            lines.append(_mermaid_node(name, title, f"{row.label}: {row.reason or ''}"))
            classes["disabled" if row.state == "disabled" else "blocked"].append(name)
    for name in sorted({e.target for e in _drawn(inventory) if e.target not in inventory.rows}):
        lines.append(_mermaid_node(name, name, "not installed"))
        classes["missing"].append(name)
    dotted: list[int] = []
    for index, edge in enumerate(_drawn(inventory)):
        text = _mermaid_text(edge.spec if edge.kind == "requires" else f"{edge.kind} {edge.spec}")
        text = text.strip()
        arrow = "-->" if edge.kind == "requires" else "-.->"
        if text:
            arrow += f"|{text}|"
        if edge.kind == "after":
            dotted.append(index)
        lines.append(f"  {_mermaid_id(edge.plugin)} {arrow} {_mermaid_id(edge.target)}")
    if dotted:
        # Mermaid draws -.-> dashed; a finer dash pattern marks `after` as dotted.
        lines.append(f"  linkStyle {','.join(map(str, dotted))} stroke-dasharray:2 4")
    lines += [
        "  classDef blocked stroke:#d33,color:#d33",
        "  classDef disabled stroke:#999,color:#999",
        "  classDef missing stroke:#d33,stroke-dasharray:4 4",
    ]
    for css, names in classes.items():
        if names:
            lines.append(f"  class {','.join(_mermaid_id(n) for n in names)} {css}")
    return "\n".join(lines)

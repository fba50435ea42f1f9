"""The dependency graph as the dashboard draws it: nodes in layers by start order, typed edges."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any, Final

from nexus.kernel.records import PluginStatus

#: Node states that the drawing marks as a problem.
TROUBLED: Final = frozenset({"failed", "blocked", "missing"})


def _deps(status: PluginStatus) -> list[tuple[str, str, str]]:
    """(dependency, kind, version specifier) of a plugin, requires first."""
    return [(name, "requires", spec) for name, spec in sorted(status.requires.items())] + [
        (name, "optional", spec) for name, spec in sorted(status.optional.items())
    ]


def start_order(statuses: Iterable[PluginStatus]) -> list[str]:
    """Plugins in the order the kernel starts them: dependencies first, ties by name.

    Plugins caught in a dependency cycle come last, by name.
    """
    known = {s.name: s for s in statuses}
    waiting = {
        name: {dep for dep, _, _ in _deps(status) if dep in known and dep != name}
        for name, status in known.items()
    }
    dependents: dict[str, list[str]] = {name: [] for name in known}
    for name, deps in waiting.items():
        for dep in deps:
            dependents[dep].append(name)
    ready = [name for name, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for dependent in dependents[name]:
            waiting[dependent].discard(name)
            if not waiting[dependent]:
                heapq.heappush(ready, dependent)
    placed = set(order)
    return order + sorted(name for name in known if name not in placed)


def dependency_graph(statuses: Iterable[PluginStatus]) -> dict[str, Any]:
    """Nodes (with their layer: the longest chain of dependencies below) and edges.

    Edges point from a dependency to the plugin that needs it (the direction of start order)
    and have a kind, "requires" or "optional". A required plugin that is not installed is a
    node of state "missing".
    """
    statuses = list(statuses)
    known = {s.name: s for s in statuses}
    order = start_order(statuses)
    position = {name: index for index, name in enumerate(order)}
    layer: dict[str, int] = {}
    for name in order:  # dependencies come first in start order, cycles aside
        deps = [dep for dep, _, _ in _deps(known[name]) if dep in known and dep != name]
        layer[name] = 1 + max((layer.get(dep, 0) for dep in deps), default=-1)
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    missing: set[str] = set()
    for name in order:
        status = known[name]
        nodes.append(
            {
                "id": name,
                "state": status.state.value,
                "version": status.version,
                "enabled": status.enabled,
                "layer": layer[name],
                "order": position[name],
                "reason": status.reason,
                "is_troubled": status.state.value in TROUBLED,
            }
        )
        for dep, kind, spec in _deps(status):
            if dep not in known:
                if kind == "optional":
                    continue  # an absent optional plugin is not a problem
                missing.add(dep)
            edges.append({"source": dep, "target": name, "kind": kind, "version": spec})
    for name in sorted(missing):
        nodes.append(
            {
                "id": name,
                "state": "missing",
                "version": None,
                "enabled": False,
                "layer": 0,
                "order": None,
                "reason": "not installed",
                "is_troubled": True,
            }
        )
    return {"nodes": nodes, "edges": edges, "order": order}


def dependency_closure(statuses: Iterable[PluginStatus], name: str, *, optional: bool) -> set[str]:
    """Every plugin `name` needs, directly or not (`optional` ones too, if asked)."""
    known = {s.name: s for s in statuses}
    found: set[str] = set()
    pending = [name]
    while pending:
        status = known.get(pending.pop())
        if status is None:
            continue
        deps = set(status.requires) | (set(status.optional) if optional else set())
        for dep in deps - found:
            found.add(dep)
            pending.append(dep)
    found.discard(name)
    return found

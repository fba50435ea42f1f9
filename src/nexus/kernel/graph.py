"""Dependency resolution: versions, requires/optional/after, cycles, deterministic start order."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from packaging.version import Version

from nexus.errors import DependencyCycleError
from nexus.kernel.manifest import Manifest, parse_specifier


@dataclass(slots=True)
class Resolution:
    """The outcome of resolving a set of manifests."""

    order: list[str] = field(default_factory=list)  # startable plugins, dependencies first
    blocked: dict[str, str] = field(default_factory=dict)  # plugin -> why it cannot start
    cycles: list[list[str]] = field(default_factory=list)  # each as a closed path a -> b -> a


def _spec_text(name: str, spec: str) -> str:
    return f"{name}{spec}" if spec else name


def _direct_problem(
    manifest: Manifest,
    manifests: Mapping[str, Manifest],
    unavailable: Mapping[str, str],
    host_version: Version,
) -> str | None:
    if manifest.nexus and not parse_specifier(manifest.nexus).contains(
        host_version, prereleases=True
    ):
        return f"needs nexus{manifest.nexus}, but this is nexus {host_version}"
    for dep, spec in sorted(manifest.requires.items()):
        if dep in unavailable:
            return f"needs {dep!r}, which is {unavailable[dep]}"
        found = manifests.get(dep)
        if found is None:
            installed = ", ".join(sorted({*manifests, *unavailable} - {manifest.name})) or "none"
            return (
                f"needs {dep!r}, which is not installed. Installed plugins: {installed}. "
                f"Install it or remove it from 'requires'."
            )
        if spec and not parse_specifier(spec).contains(found.parsed_version, prereleases=True):
            return f"needs {_spec_text(dep, spec)}, found {found.version}"
    return None


def _optional_usable(dep: str, spec: str, manifests: Mapping[str, Manifest]) -> bool:
    found = manifests.get(dep)
    return found is not None and (
        not spec or parse_specifier(spec).contains(found.parsed_version, prereleases=True)
    )


def resolve(
    manifests: Mapping[str, Manifest],
    *,
    host_version: str,
    unavailable: Mapping[str, str] | None = None,
) -> Resolution:
    """Order the startable plugins and say why each of the others cannot start.

    `manifests` are the plugins that should start; `unavailable` maps installed plugins that
    will not start (disabled, failed) to a phrase saying why, used in their dependents' reasons.
    """
    host = Version(host_version)
    unavailable = dict(unavailable or {})
    result = Resolution()
    candidates = {name: m for name, m in manifests.items() if name not in unavailable}

    # Block plugins whose own requirements fail, then everything that requires a blocked one.
    blocked: dict[str, str] = {}
    for name in sorted(candidates):
        problem = _direct_problem(candidates[name], candidates, unavailable, host)
        if problem:
            blocked[name] = problem
    _propagate(candidates, blocked)

    live = {name: m for name, m in candidates.items() if name not in blocked}
    edges = _edges(live)
    order, leftover = _topological(live, edges)
    if leftover:
        cycle_members: dict[str, list[str]] = {}
        for component in _cycles(leftover, edges):
            path = _cycle_path(component, edges)
            result.cycles.append(path)
            for member in component:
                cycle_members[member] = path
        for name in sorted(leftover):
            if name in cycle_members:
                blocked[name] = "is in a dependency cycle: " + " -> ".join(cycle_members[name])
        for name in sorted(leftover):
            if name not in blocked:
                waiting = sorted(d for d in edges[name] if d in leftover)
                blocked[name] = f"needs {waiting[0]!r}, which cannot start (dependency cycle)"
        _propagate(candidates, blocked)
        order = [name for name in order if name not in blocked]
    result.order = order
    result.blocked = dict(sorted(blocked.items()))
    return result


def _propagate(candidates: Mapping[str, Manifest], blocked: dict[str, str]) -> None:
    changed = True
    while changed:
        changed = False
        for name in sorted(candidates):
            if name in blocked:
                continue
            for dep in sorted(candidates[name].requires):
                if dep in blocked:
                    blocked[name] = f"needs {dep!r}, which is blocked: {dep} {blocked[dep]}"
                    changed = True
                    break


def _edges(live: Mapping[str, Manifest]) -> dict[str, set[str]]:
    """plugin -> the plugins that must start before it."""
    edges: dict[str, set[str]] = {}
    for name, manifest in live.items():
        deps = {dep for dep in manifest.requires if dep in live}
        deps |= {d for d, spec in manifest.optional.items() if _optional_usable(d, spec, live)}
        deps |= {dep for dep in manifest.after if dep in live}
        if name not in manifest.requires:
            deps.discard(name)  # a plugin naming itself in optional/after is harmless
        edges[name] = deps
    return edges


def _topological(
    live: Mapping[str, Manifest], edges: Mapping[str, set[str]]
) -> tuple[list[str], set[str]]:
    """Kahn's algorithm; ties broken by name so the order never depends on discovery order."""
    waiting = {name: len(deps) for name, deps in edges.items()}
    dependents: dict[str, list[str]] = {name: [] for name in live}
    for name, deps in edges.items():
        for dep in deps:
            dependents[dep].append(name)
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for dependent in dependents[name]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    return order, set(live) - set(order)


def _cycles(nodes: set[str], edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of `nodes` that contain a cycle (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(edges[node] & nodes):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges[node]:
                components.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(components)


def _cycle_path(component: list[str], edges: Mapping[str, set[str]]) -> list[str]:
    """The shortest closed path through a cycle from its smallest name: a -> b -> a."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            deps = sorted(edges[node] & members)
            if start in deps:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            for dep in deps:
                if dep not in previous and dep != start:
                    previous[dep] = node
                    following.append(dep)
        frontier = following
    raise AssertionError(
        "unreachable: a strongly connected component closes on itself"
    )  # pragma: no cover


def resolve_order(manifests: Iterable[Manifest], *, host_version: str) -> list[str]:
    """Start order of `manifests`; raises DependencyCycleError naming the whole cycle."""
    resolution = resolve({m.name: m for m in manifests}, host_version=host_version)
    if resolution.cycles:
        raise DependencyCycleError(resolution.cycles[0])
    return resolution.order

"""Dependency resolution: order, versions, missing plugins and cycles."""

from __future__ import annotations

from typing import Any

import pytest

from nexus.errors import DependencyCycleError
from nexus.kernel.graph import resolve, resolve_order
from nexus.kernel.manifest import Manifest


def m(name: str, version: str = "1.0", **fields: Any) -> Manifest:
    return Manifest(name=name, version=version, entry="plugin:Main", **fields)


def by_name(*manifests: Manifest) -> dict[str, Manifest]:
    return {manifest.name: manifest for manifest in manifests}


def test_dependencies_start_first_and_ties_break_by_name() -> None:
    """Requires, optional and after all order the start; independent plugins go by name."""
    order = resolve_order(
        [
            m("web", requires={"auth": ""}, optional={"cache": ""}),
            m("cache", after=["db"]),
            m("auth", requires={"db": ">=1"}),
            m("db"),
            m("zeta"),
            m("alpha"),
        ],
        host_version="0.1.0",
    )
    assert order == ["alpha", "db", "auth", "cache", "web", "zeta"]


def test_version_mismatch_blocks_with_reason() -> None:
    """A required version outside the specifier blocks the dependent, naming both versions."""
    result = resolve(
        by_name(m("database", "1.3"), m("auth", requires={"database": ">=2"})), host_version="0.1.0"
    )
    assert result.order == ["database"]
    assert result.blocked == {"auth": "needs database>=2, found 1.3"}


def test_missing_dependency_names_installed_plugins_and_blocks_dependents() -> None:
    """A missing requirement blocks the plugin and, transitively, what requires it."""
    result = resolve(
        by_name(m("auth", requires={"database": ""}), m("web", requires={"auth": ""}), m("cache")),
        host_version="0.1.0",
    )
    assert result.order == ["cache"]
    assert result.blocked["auth"].startswith(
        "needs 'database', which is not installed. Installed plugins: cache, web."
    )
    assert result.blocked["web"].startswith("needs 'auth', which is blocked: auth needs 'database'")


def test_unavailable_dependency_reason_is_used() -> None:
    """A disabled or failed dependency is named with why it is unavailable."""
    result = resolve(
        by_name(m("database"), m("auth", requires={"database": ""})),
        host_version="0.1.0",
        unavailable={"database": "disabled"},
    )
    assert result.blocked == {"auth": "needs 'database', which is disabled"}


def test_optional_dependency_absent_or_mismatched_does_not_block() -> None:
    """An optional dependency only orders the start when it is present in a matching version."""
    result = resolve(
        by_name(m("api", optional={"cache": ">=2", "metrics": ""}), m("cache", "1.0")),
        host_version="0.1.0",
    )
    assert result.order == ["api", "cache"]
    assert result.blocked == {}


def test_cycle_is_reported_with_its_whole_path() -> None:
    """A cycle blocks its members with the full path; dependents of the cycle are blocked too."""
    result = resolve(
        by_name(
            m("auth", requires={"sessions": ""}),
            m("sessions", requires={"tokens": ""}),
            m("tokens", requires={"auth": ""}),
            m("web", requires={"auth": ""}),
            m("other"),
        ),
        host_version="0.1.0",
    )
    assert result.cycles == [["auth", "sessions", "tokens", "auth"]]
    assert (
        result.blocked["sessions"] == "is in a dependency cycle: auth -> sessions -> tokens -> auth"
    )
    assert "web" in result.blocked and result.order == ["other"]
    with pytest.raises(DependencyCycleError, match="auth -> sessions -> tokens -> auth"):
        resolve_order(
            [
                m("auth", requires={"sessions": ""}),
                m("sessions", requires={"tokens": ""}),
                m("tokens", requires={"auth": ""}),
            ],
            host_version="0.1.0",
        )


def test_self_requirement_is_a_cycle() -> None:
    """A plugin that requires itself is a one-plugin cycle."""
    result = resolve(by_name(m("loop", requires={"loop": ""})), host_version="0.1.0")
    assert result.cycles == [["loop", "loop"]]


def test_host_version_constraint() -> None:
    """A plugin built for another Nexus version is blocked with both versions named."""
    result = resolve(by_name(m("future", nexus=">=2.0")), host_version="0.1.0")
    assert result.blocked == {"future": "needs nexus>=2.0, but this is nexus 0.1.0"}


def test_order_does_not_depend_on_input_order() -> None:
    """The same manifests in any order resolve to the same start order."""
    manifests = [m("c", requires={"a": ""}), m("b"), m("a"), m("d", after=["c", "b"])]
    first = resolve_order(manifests, host_version="0.1.0")
    assert (
        first
        == resolve_order(list(reversed(manifests)), host_version="0.1.0")
        == ["a", "b", "c", "d"]
    )

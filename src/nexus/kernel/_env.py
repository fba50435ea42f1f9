"""The NEXUS__SECTION__KEY environment variables, as one more configuration layer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from nexus.errors import Problem
from nexus.kernel._yaml import KeyPath

__all__ = ["ENV_PREFIX", "environment_layer"]

ENV_PREFIX: Final = "NEXUS__"


def environment_layer(
    environ: Mapping[str, str],
) -> tuple[dict[str, Any], dict[KeyPath, str], list[Problem]]:
    tree: dict[str, Any] = {}
    sources: dict[KeyPath, str] = {}
    problems: list[Problem] = []
    entries: list[tuple[KeyPath, str, Any]] = []
    for name, raw in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        where = f"environment variable {name}"
        keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(keys):
            problems.append(
                Problem(where, "", "empty name part: use NEXUS__SECTION__KEY, '__' between names")
            )
            continue
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                message = (
                    f"invalid JSON ({exc.msg} at column {exc.colno}); values starting with "
                    f"'[' or '{{' are read as JSON"
                )
                problems.append(Problem(where, ".".join(keys), message))
                continue
        entries.append((keys, name, value))

    # Shallow variables first, so NEXUS__A__B refines a JSON object given by NEXUS__A.
    for keys, name, value in sorted(entries, key=lambda e: (len(e[0]), e[0], e[1])):
        where = f"environment variable {name}"
        node: Any = tree
        for depth in range(1, len(keys)):
            here = keys[:depth]
            node = node.setdefault(here[-1], {})
            if not isinstance(node, dict):
                message = f"conflicts with {sources[here]}, which sets {'.'.join(here)} to a value"
                problems.append(Problem(where, ".".join(keys), message))
                break
            sources.setdefault(here, where)
        else:
            if keys in sources:  # the same variable name in another case
                problems.append(Problem(where, ".".join(keys), f"also set by {sources[keys]}"))
            node[keys[-1]] = value
            sources[keys] = where
    return tree, sources, problems

"""The cluster plugin as the dashboard uses it, when one runs: instances, and plugin operations.

The admin plugin does not import the cluster plugin (it is optional): it looks the service up
by its key name and uses `instances()`, `set_enabled(name, enabled, actor=)` and
`request_reload(name, actor=)`. Those record the wish in the cluster's shared state; every
instance, this one included, then applies it on its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
from collections.abc import Mapping
from typing import Any, Final

from nexus.kernel.services import ServiceKey

#: The cluster plugin's service, looked up by name (`services:use:cluster`).
CLUSTER: Final = ServiceKey[Any]("cluster")


async def resolved(value: Any) -> Any:
    """`value`, awaited if it is awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


def plain(value: Any, depth: int = 0) -> Any:
    """JSON-ready data from a record: dataclass, pydantic model, mapping, `as_dict()` ..."""
    if depth > 8:
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value, depth + 1)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [plain(v, depth + 1) for v in items]
    for method in ("as_dict", "to_dict", "model_dump"):
        converter = getattr(value, method, None)
        if callable(converter):
            return plain(converter(), depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)}
    return str(value)


async def instances(cluster: Any) -> list[Any]:
    """The instances the cluster reports, as JSON-ready data."""
    found = plain(await resolved(cluster.instances()))
    if isinstance(found, Mapping):  # instance id -> details
        return [
            {"id": key, **(v if isinstance(v, dict) else {"value": v})} for key, v in found.items()
        ]
    return found if isinstance(found, list) else [found]


def request(cluster: Any, operation: str, name: str, *, actor: str | None) -> Any:
    """Ask the cluster to enable, disable or reload `name` everywhere; returns its answer."""
    if operation == "reload":
        return cluster.request_reload(name, actor=actor)
    return cluster.set_enabled(name, operation == "enable", actor=actor)


def supports(cluster: Any, operation: str) -> bool:
    """Whether the cluster service offers a plugin operation (enable, disable, reload)."""
    method = "request_reload" if operation == "reload" else "set_enabled"
    return callable(getattr(cluster, method, None))

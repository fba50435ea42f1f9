"""`/api/cluster`: the instances and the desired plugin set, for admins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import APIRouter, Depends, Request

from nexus.errors import PluginNotFoundError
from nexus.http.problems import ProblemError, ServiceUnavailableError
from nexus.plugins.cluster.control import ClusterControl, ProtectedPluginError
from nexus.plugins.cluster.converger import Operation
from nexus.plugins.cluster.store import ClusterUnavailableError

#: The permission needed to see the instances and the desired set.
READ_PERMISSION: Final = "cluster:read"
#: The permission needed to enable, disable or reload plugins across the cluster.
MANAGE_PERMISSION: Final = "plugins:manage"

Publish = Callable[[str, dict[str, Any]], Awaitable[object]]


def _permission(permission: str) -> Callable[[Request], Awaitable[Any]]:
    try:
        from nexus.plugins.auth import require
    except ImportError:

        async def unavailable(request: Request) -> None:
            raise ServiceUnavailableError(
                "Cluster control needs the auth plugin to check who asks, and it is not "
                "installed: pip install 'nexus-platform[auth]'."
            )

        return unavailable
    return require(permission)


def build_router(control: ClusterControl, publish: Publish) -> APIRouter:
    """The routes, acting through `control` and announcing admin actions with `publish`."""
    router = APIRouter()
    reader = Depends(_permission(READ_PERMISSION))
    # A default rather than an Annotated alias: FastAPI resolves (postponed) annotations in
    # the module's globals, where a local alias is not found.
    manager = Depends(_permission(MANAGE_PERMISSION))

    @router.get(
        "/instances", summary="Every live instance and the plugins it runs", dependencies=[reader]
    )
    async def instances() -> dict[str, Any]:
        try:
            reports = await control.instances()
        except ClusterUnavailableError as exc:
            raise ServiceUnavailableError(str(exc), retry_after=5) from exc
        return {"instance_id": control.instance_id, "instances": [r.as_dict() for r in reports]}

    @router.get("/plugins", summary="The desired state of plugins", dependencies=[reader])
    async def desired() -> dict[str, Any]:
        try:
            found = await control.desired()
        except ClusterUnavailableError as exc:
            raise ServiceUnavailableError(str(exc), retry_after=5) from exc
        return {"plugins": {n: d.as_dict() for n, d in sorted(found.items())}}

    async def change(name: str, operation: Operation, username: str) -> dict[str, Any]:
        try:
            if operation == "reload":
                wanted = await control.request_reload(name, actor=username)
            else:
                wanted = await control.set_enabled(name, operation == "enable", actor=username)
        except PluginNotFoundError as exc:
            raise ProblemError(404, str(exc)) from exc
        except ProtectedPluginError as exc:
            raise ProblemError(409, str(exc)) from exc
        except ClusterUnavailableError as exc:
            raise ServiceUnavailableError(str(exc), retry_after=5) from exc
        await publish(
            f"admin.plugin.{operation}",
            {
                "actor": username,
                "resource": f"plugin:{name}",
                "outcome": "success",
                "plugin": name,
                "operation": operation,
                "scope": "cluster",
                "generation": wanted.generation,
                "instance": control.instance_id,
            },
        )
        return {"plugin": name, "operation": operation, "desired": wanted.as_dict()}

    @router.post("/plugins/{name}/enable", status_code=202, summary="Enable on every instance")
    async def enable(name: str, principal: Any = manager) -> dict[str, Any]:
        return await change(name, "enable", principal.username)

    @router.post("/plugins/{name}/disable", status_code=202, summary="Disable on every instance")
    async def disable(name: str, principal: Any = manager) -> dict[str, Any]:
        return await change(name, "disable", principal.username)

    @router.post("/plugins/{name}/reload", status_code=202, summary="Reload on every instance")
    async def reload(name: str, principal: Any = manager) -> dict[str, Any]:
        return await change(name, "reload", principal.username)

    return router

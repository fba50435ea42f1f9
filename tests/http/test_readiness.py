"""/readyz is dependency-aware: a plugin is not ready when something it requires is not."""

from __future__ import annotations

from typing import Any

from nexus import Health, Plugin, PluginContext
from nexus.testing import create_test_app, serve


class Flaky(Plugin):
    manifest = {"name": "db", "version": "1.0"}

    def __init__(self) -> None:
        self.ok = True

    async def health(self) -> Health:
        return Health.healthy() if self.ok else Health.unhealthy("connection refused")


class User(Plugin):
    def __init__(self, name: str, **deps: Any) -> None:
        self.manifest = {"name": name, "version": "1.0", **deps}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        pass


async def test_unhealthy_dependency_makes_dependents_not_ready() -> None:
    """When db turns unhealthy, plugins requiring it are not ready; optional users stay ready."""
    db = Flaky()
    app = create_test_app(
        plugins=[
            db,
            User("api", requires={"db": ""}),
            User("web", requires={"api": ""}),
            User("stats", optional={"db": ""}),
        ]
    )
    async with serve(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        db.ok = False
        response = await client.get("/readyz")
        assert response.status_code == 503
        plugins = response.json()["plugins"]
        assert plugins["db"] == {
            "state": "active",
            "healthy": False,
            "ready": False,
            "detail": "connection refused",
        }
        assert plugins["api"]["ready"] is False
        assert plugins["api"]["detail"] == "requires 'db', which is not ready"
        assert plugins["web"]["detail"] == "requires 'api', which is not ready"
        assert plugins["stats"]["ready"] is True


async def test_disabled_plugins_do_not_block_readiness() -> None:
    """A plugin disabled on purpose is reported but does not make the app not ready."""
    app = create_test_app(
        plugins=[User("extra")], config={"plugins": {"extra": {"enabled": False}}}
    )
    async with serve(app) as client:
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["plugins"]["extra"]["state"] == "disabled"

"""`DbSession` in route handlers of another plugin, served through the whole application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel
from sqlalchemy import text

from nexus import Plugin, PluginContext, PluginState
from nexus.plugins.database import DATABASE, DbSession
from nexus.testing import create_test_app, serve
from tests.plugins.database.conftest import database_plugin


class Item(BaseModel):
    name: str


class Shop(Plugin):
    """Stores items through `session: DbSession`; one route fails after writing."""

    def __init__(self, name: str = "shop", grants: tuple[str, ...] = ("services:use:database",)):
        self.manifest = {
            "name": name,
            "version": "1.0",
            "requires": {"database": ">=1.0"},
            "permissions": list(grants),
        }

    async def setup(self, ctx: PluginContext[Any]) -> None:
        if "services:use:database" in self.manifest["permissions"]:
            async with ctx.services.get(DATABASE).session() as session:
                await session.execute(text("CREATE TABLE items (name VARCHAR(40) PRIMARY KEY)"))
        router = APIRouter()

        @router.post("/items", status_code=201)
        async def add(item: Item, session: DbSession) -> dict[str, str]:
            await session.execute(text("INSERT INTO items VALUES (:name)"), {"name": item.name})
            return {"name": item.name}

        @router.post("/items/refused")
        async def refuse(item: Item, session: DbSession) -> dict[str, str]:
            await session.execute(text("INSERT INTO items VALUES (:name)"), {"name": item.name})
            raise HTTPException(409, "Refused after writing.")

        @router.get("/items")
        async def names(session: DbSession) -> list[str]:
            result = await session.execute(text("SELECT name FROM items ORDER BY name"))
            return list(result.scalars())

        ctx.http.include_router(router)


async def test_route_session_commits_after_the_handler_and_rolls_back_on_error(
    database_url: str, tmp_path: Path
) -> None:
    """A handler's writes are committed when it returns and rolled back when it raises."""
    app = create_test_app(
        plugins=[database_plugin(), Shop()],
        config={"data_dir": str(tmp_path), "plugins": {"database": {"url": database_url}}},
    )
    async with serve(app) as client:
        assert app.kernel.plugins.status("shop").state is PluginState.ACTIVE
        added = await client.post("/api/shop/items", json={"name": "apple"})
        refused = await client.post("/api/shop/items/refused", json={"name": "pear"})
        listed = await client.get("/api/shop/items")
        async with app.kernel.services.get(DATABASE).session() as session:
            stored = list((await session.execute(text("SELECT name FROM items"))).scalars())
    assert added.status_code == 201
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"] == "Refused after writing."
    assert listed.json() == ["apple"]
    assert stored == ["apple"]


async def test_a_failed_commit_is_an_error_response_not_a_success(tmp_path: Path) -> None:
    """The commit happens before the response: a write the database refuses is a 500 problem."""
    app = create_test_app(plugins=[database_plugin(), Shop()], config={"data_dir": str(tmp_path)})
    async with serve(app) as client:
        async with app.kernel.services.get(DATABASE).session() as session:
            # Deferred: the duplicate is only refused at COMMIT, after the handler returned.
            await session.execute(
                text(
                    "CREATE TABLE tickets (name VARCHAR(40) REFERENCES items (name) "
                    "DEFERRABLE INITIALLY DEFERRED)"
                )
            )
            await session.execute(
                text(
                    "CREATE TRIGGER ticket AFTER INSERT ON items "
                    "BEGIN INSERT INTO tickets VALUES ('nothing-' || NEW.name); END"
                )
            )
        response = await client.post("/api/shop/items", json={"name": "apple"})
        listed = await client.get("/api/shop/items")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert listed.json() == []


async def test_a_route_of_a_plugin_without_the_grant_gets_no_session(tmp_path: Path) -> None:
    """DbSession uses the route's own plugin's permissions: without the grant it is refused."""
    app = create_test_app(
        plugins=[database_plugin(), Shop("sneaky", grants=())],
        config={"data_dir": str(tmp_path)},
    )
    async with serve(app) as client:
        response = await client.get("/api/sneaky/items")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "services:use:database" in response.json()["detail"]


class Reader(Plugin):
    """Uses DbSession without requiring the database plugin, so it may run without it."""

    manifest = {"name": "reader", "version": "1.0", "permissions": ["services:use:database"]}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.get("/now")
        async def now(session: DbSession) -> int:
            return int((await session.execute(text("SELECT 1"))).scalar_one())

        ctx.http.include_router(router)


async def test_a_session_without_the_database_plugin_is_a_503(tmp_path: Path) -> None:
    """With the database plugin disabled, DbSession answers 503 with Retry-After."""
    app = create_test_app(
        plugins=[database_plugin(), Reader()],
        config={"data_dir": str(tmp_path), "plugins": {"database": {"enabled": False}}},
    )
    async with serve(app) as client:
        response = await client.get("/api/reader/now")
        await app.kernel.plugins.enable("database")
        recovered = await client.get("/api/reader/now")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"] == "The database is not available."
    assert (recovered.status_code, recovered.json()) == (200, 1)

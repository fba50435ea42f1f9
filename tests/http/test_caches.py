"""Reloading an HTTP plugin lets the old copy of its code be collected."""

from __future__ import annotations

import gc
import textwrap
from pathlib import Path

from nexus.testing import create_test_app, serve

PLUGIN = """
from fastapi import APIRouter
from pydantic import BaseModel
from nexus import Plugin

class Item(BaseModel):
    name: str

class Main(Plugin):
    async def setup(self, ctx):
        router = APIRouter()

        @router.post("/items")
        async def add(item: Item) -> Item:
            return item

        ctx.http.include_router(router)
"""


async def test_reloading_an_http_plugin_frees_its_old_code(tmp_path: Path) -> None:
    """After 30 reloads only the current copy of the plugin's model class is alive."""
    directory = tmp_path / "plugins" / "shop"
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(
        '{"name": "shop", "version": "1.0", "entry": "plugin:Main"}'
    )
    (directory / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    app = create_test_app(plugin_paths=[tmp_path / "plugins"])
    async with serve(app) as client:
        for _ in range(30):
            await app.kernel.plugins.reload("shop")
            response = await client.post("/api/shop/items", json={"name": "pen"})
            assert response.json() == {"name": "pen"}
        gc.collect()
        copies = [o for o in gc.get_objects() if isinstance(o, type) and o.__qualname__ == "Item"]
        assert len([c for c in copies if c.__module__ == "nexus_plugins.shop.plugin"]) == 1

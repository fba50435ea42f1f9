"""The testing helpers build real kernels and apps."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from nexus import Plugin, PluginContext, PluginState
from nexus.testing import create_test_app, create_test_kernel, serve


class Greeting(BaseModel):
    word: str = "hello"


class Greeter(Plugin):
    Config = Greeting
    manifest = {"name": "greeter", "version": "1.0"}

    async def setup(self, ctx: PluginContext[Greeting]) -> None:
        router = APIRouter()

        @router.get("/")
        async def greet() -> dict[str, Any]:
            return {"greeting": ctx.config.word}

        ctx.http.include_router(router)


async def test_kernel_applies_config_given_in_code() -> None:
    """create_test_kernel validates the plugin section passed as a dict."""
    captured: list[str] = []

    class Capture(Greeter):
        async def setup(self, ctx: PluginContext[Greeting]) -> None:
            captured.append(ctx.config.word)

    async with create_test_kernel(
        plugins=[Capture()], config={"plugins": {"greeter": {"word": "hi"}}}
    ) as kernel:
        assert kernel.plugins.status("greeter").state is PluginState.ACTIVE
    assert captured == ["hi"]


async def test_serve_runs_lifespan_and_routes() -> None:
    """serve() starts the kernel and the client reaches plugin routes."""
    app = create_test_app(plugins=[Greeter()], config={"plugins": {"greeter": {"word": "hey"}}})
    async with serve(app) as client:
        response = await client.get("/api/greeter/")
        assert response.json() == {"greeting": "hey"}
    assert not app.kernel.is_started

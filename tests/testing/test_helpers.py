"""The testing helpers build real kernels and apps, with fakes standing in for services."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, Request
from pydantic import BaseModel

from nexus import NexusError, Plugin, PluginContext, PluginState, ServiceKey
from nexus.kernel import inline_plugin
from nexus.testing import create_test_app, create_test_kernel, fake_plugin, serve
from tests.conftest import PluginWriter


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


class Mailer:
    """The interface of a mail service, as a consumer plugin knows it."""

    def send(self, to: str) -> str:
        raise NotImplementedError


class FakeMailer(Mailer):
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, to: str) -> str:
        self.sent.append(to)
        return f"queued for {to}"


MAILER = ServiceKey[Mailer]("mailer", Mailer)


class Signup(Plugin):
    """Sends a mail in setup; needs the mailer service."""

    def __init__(self, name: str = "alpha", **manifest: Any) -> None:
        self.manifest = {
            "name": name,
            "version": "1.0",
            "permissions": ["services:use:mailer"],
            **manifest,
        }

    async def setup(self, ctx: PluginContext[Any]) -> None:
        self.greeting = ctx.services.get(MAILER).send("admin@example.org")


class SignupApi(Signup):
    """Also sends a mail on POST /api/<name>/, getting the service through the route's context."""

    async def setup(self, ctx: PluginContext[Any]) -> None:
        await super().setup(ctx)
        router = APIRouter()

        @router.post("/")
        async def signup(request: Request) -> dict[str, str]:
            context: PluginContext[Any] = request.app.state.nexus_context
            return {"result": context.services.get(MAILER).send("new@example.org")}

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


async def test_service_fakes_are_there_before_any_plugin_starts() -> None:
    """A plugin starting before test_overrides (by name) still gets the fake in its setup."""
    mailer = FakeMailer()
    async with create_test_kernel(plugins=[Signup("alpha")], services={MAILER: mailer}) as kernel:
        assert kernel.plugins.active()[0] == "alpha"
        assert kernel.plugins.plugin("alpha").greeting == "queued for admin@example.org"  # type: ignore[union-attr]
        overrides = kernel.plugins.status("test_overrides")
        assert overrides.state is PluginState.ACTIVE
        assert "Fakes of mailer" in overrides.description
        assert [(s.key, s.provider) for s in kernel.services.entries()] == [
            ("mailer", "test_overrides"),
            ("nexus.platform", "nexus"),
        ]
    assert mailer.sent == ["admin@example.org"]


async def test_route_handlers_reach_service_fakes() -> None:
    """create_test_app(services=...) serves the fake to route handlers through their context."""
    mailer = FakeMailer()
    app = create_test_app(plugins=[SignupApi("signup")], services={MAILER: mailer})
    async with serve(app) as client:
        response = await client.post("/api/signup/")
    assert response.json() == {"result": "queued for new@example.org"}
    assert mailer.sent == ["admin@example.org", "new@example.org"]


def test_service_fakes_must_match_the_key_type() -> None:
    """A fake that is not an instance of the key's class is refused when the kernel is built."""
    with pytest.raises(TypeError, match="as a str, but the key expects Mailer"):
        create_test_kernel(services={MAILER: "not a mailer"})


async def test_service_fakes_refuse_a_running_real_provider(plugins: PluginWriter) -> None:
    """A real provider that would also run is named in the error; disabled, it is no obstacle."""
    plugins.write("smtp", provides=["mailer"])
    with pytest.raises(NexusError, match=r"'mailer' is also provided by plugin 'smtp' \(") as info:
        create_test_app(plugin_paths=[plugins.root], services={MAILER: FakeMailer()})
    assert "config={'plugins': {'smtp': {'enabled': False}}}" in str(info.value)
    kernel = create_test_kernel(
        plugin_paths=[plugins.root],
        config={"plugins": {"smtp": {"enabled": False}}},
        services={MAILER: FakeMailer()},
        plugins=[Signup()],
    )
    async with kernel:
        assert kernel.plugins.status("smtp").state is PluginState.DISABLED
        assert kernel.plugins.status("alpha").state is PluginState.ACTIVE


async def test_fake_plugin_stands_in_for_a_required_provider() -> None:
    """A plugin that requires 'smtp' starts after a stand-in named 'smtp' and gets its fake."""
    mailer = FakeMailer()
    consumer = Signup("alpha", requires={"smtp": ">=2.0"})
    kernel = create_test_kernel(
        plugins=[consumer, fake_plugin("smtp", {MAILER: mailer}, version="2.1")]
    )
    async with kernel:
        assert kernel.plugins.active() == ["smtp", "alpha"]
        assert kernel.plugins.status("smtp").version == "2.1"
    assert mailer.sent == ["admin@example.org"]


async def test_fake_plugin_version_must_satisfy_requirements() -> None:
    """With a stand-in too old for the requirement, the consumer is blocked, naming both."""
    kernel = create_test_kernel(
        plugins=[
            Signup("alpha", requires={"smtp": ">=2.0"}),
            fake_plugin("smtp", {MAILER: FakeMailer()}),
        ]
    )
    async with kernel:
        status = kernel.plugins.status("alpha")
        assert status.state is PluginState.BLOCKED
        assert status.reason == "needs smtp>=2.0, found 1.0.0"


async def test_inline_plugin_sources_mix_with_fakes() -> None:
    """Service fakes also reach plugins given as inline_plugin(manifest, factory) sources."""
    mailer = FakeMailer()
    source = inline_plugin(
        {"name": "zeta", "version": "1.0", "permissions": ["services:use:mailer"]},
        lambda: Signup("zeta"),
    )
    async with create_test_kernel(plugins=[source], services={MAILER: mailer}):
        pass
    assert mailer.sent == ["admin@example.org"]

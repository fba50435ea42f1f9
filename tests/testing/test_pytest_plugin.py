"""The nexus pytest plugin, as installed (pytest11), runs a plugin project's tests in a subprocess."""

from __future__ import annotations

import json
import textwrap

import pytest

pytest_plugins = ["pytester"]

NOTES = """
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel
from nexus import Plugin, PluginContext, ServiceKey

LOADS: list[str] = []  # module state: a fresh import per test starts it empty again
STAMP = ServiceKey("stamp")


class Settings(BaseModel):
    limit: int = 10
    label: str = "notes"


class Notes(Plugin):
    Config = Settings

    async def setup(self, ctx: PluginContext[Settings]) -> None:
        LOADS.append(ctx.config.label)
        self.notes: list[str] = []
        stamp = ctx.services.get_optional(STAMP)
        router = APIRouter()

        @router.post("/", status_code=201)
        async def add(text: str) -> dict[str, object]:
            if len(self.notes) >= ctx.config.limit:
                raise HTTPException(409, "full")
            self.notes.append(text)
            await ctx.events.publish("note.created", {"text": text})
            return {"count": len(self.notes), "label": ctx.config.label, "stamp": stamp}

        @router.get("/info")
        async def info() -> dict[str, object]:
            return {"loads": LOADS, "data_dir": str(ctx.data_dir)}

        ctx.http.include_router(router)
"""

LEAKY = """
import logging
from nexus import Plugin


class Leaky(Plugin):
    async def setup(self, ctx) -> None:
        logging.getLogger("leaky.stash").plugin = self
"""

CONFTEST = """
from typing import Any

import pytest
from nexus import Plugin, PluginContext


class Herald(Plugin):
    manifest = {"name": "herald", "version": "1.0", "permissions": ["events:publish:herald.*"]}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        await ctx.events.publish("herald.started", {"during": "startup"})


@pytest.fixture
def nexus_config() -> dict[str, Any]:
    return {"plugins": {"notes": {"label": "from-conftest", "limit": 5}}}


@pytest.fixture
def nexus_plugins() -> list[Any]:
    return [Herald()]
"""

TESTS = """
from pathlib import Path

import httpx
import pytest
from nexus import Kernel, ServiceKey
from nexus.testing import AppFactory, EventRecorder, assert_unloads_cleanly, serve

pytestmark = pytest.mark.asyncio


async def test_client_and_recorder(nexus_client: httpx.AsyncClient, event_recorder: EventRecorder) -> None:
    response = await nexus_client.post("/api/notes/", params={"text": "hi"})
    assert response.json() == {"count": 1, "label": "from-conftest", "stamp": None}
    [event] = await event_recorder.wait_for("note.created")
    assert event.correlation_id == response.headers["x-request-id"]
    assert event_recorder.topics()[0] == "herald.started"  # recorded before startup finished


@pytest.mark.nexus_config(plugins={"notes": {"limit": 1, "label": "from-class"}})
class TestMarkers:
    @pytest.mark.nexus_config(plugins={"notes": {"label": "from-test"}})
    async def test_closest_marker_wins(self, nexus_client: httpx.AsyncClient) -> None:
        first = await nexus_client.post("/api/notes/", params={"text": "a"})
        assert first.json()["label"] == "from-test"
        assert (await nexus_client.post("/api/notes/", params={"text": "b"})).status_code == 409


async def test_kernel_and_isolated_state(nexus_kernel: Kernel, nexus_client: httpx.AsyncClient, tmp_path: Path) -> None:
    assert nexus_kernel.plugins.active() == ["herald", "leaky", "notes"]
    info = (await nexus_client.get("/api/notes/info")).json()
    assert info["loads"] == ["from-conftest"]
    assert Path(info["data_dir"]).is_relative_to(tmp_path)


async def test_isolated_state_again(nexus_client: httpx.AsyncClient) -> None:
    info = (await nexus_client.get("/api/notes/info")).json()
    assert info["loads"] == ["from-conftest"]


async def test_factory_with_service_fakes(nexus_app_factory: AppFactory) -> None:
    app = nexus_app_factory(services={ServiceKey("stamp"): "fake"})
    async with serve(app) as client:
        assert (await client.post("/api/notes/", params={"text": "x"})).json()["stamp"] == "fake"


@pytest.mark.nexus_config("not a mapping")
async def test_marker_misuse(nexus_client: httpx.AsyncClient) -> None:
    pass


async def test_leaky_plugin_is_caught(nexus_app, nexus_client: httpx.AsyncClient) -> None:
    await assert_unloads_cleanly(nexus_app, "leaky")
"""


def write_project(pytester: pytest.Pytester, ini: str) -> None:
    """A plugin project: plugins in src_plugins/, a conftest and tests using the fixtures."""
    for name, entry, code, extra in (
        (
            "notes",
            "plugin:Notes",
            NOTES,
            {"permissions": ["events:publish:note.*", "services:use:stamp"]},
        ),
        ("leaky", "plugin:Leaky", LEAKY, {}),
    ):
        directory = pytester.path / "src_plugins" / name
        directory.mkdir(parents=True)
        manifest = {"name": name, "version": "1.0.0", "entry": entry, **extra}
        (directory / "manifest.json").write_text(json.dumps(manifest))
        (directory / "plugin.py").write_text(textwrap.dedent(code))
    pytester.makeini(ini)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_app=TESTS)


def test_fixtures_in_strict_mode(pytester: pytest.Pytester) -> None:
    """In pytest-asyncio's strict mode every fixture works; the leak check and bad markers fail."""
    write_project(
        pytester,
        """
        [pytest]
        asyncio_mode = strict
        asyncio_default_fixture_loop_scope = function
        addopts = --strict-markers
        filterwarnings = error
        """,
    )
    result = pytester.runpytest_subprocess(
        "--nexus-plugins", "src_plugins", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=5, failed=1, errors=1)
    output = result.stdout.str()
    assert (
        "@pytest.mark.nexus_config takes keyword arguments or dicts, got 'not a mapping'" in output
    )
    assert "Plugin 'leaky' is still in memory after being unloaded (unload 1 of 3" in output
    assert (
        "-> dict['leaky.stash'] -> attribute 'plugin' of a Logger object "
        "-> the plugin instance (Leaky)" in output
    )


def test_async_fixtures_explain_a_missing_pytest_asyncio(pytester: pytest.Pytester) -> None:
    """Without pytest-asyncio, using an async fixture errors with what to install."""
    pytester.makepyfile(
        pytest_asyncio="raise ImportError('pretend pytest-asyncio is not installed')",
        test_missing="def test_client(nexus_client):\n    pass\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:asyncio", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*The nexus_client fixture is async and needs pytest-asyncio: pip install pytest-asyncio*"]
    )

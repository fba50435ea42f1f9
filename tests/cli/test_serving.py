"""The served app in-process: startup summary, live reload inside the lifespan, logging setup."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from nexus.cli.serving import build_app, logging_config, server_url
from nexus.http.app import load_app_config
from tests.cli.conftest import Project

ROUTE = """
from fastapi import APIRouter
from nexus import Plugin

class Main(Plugin):
    async def setup(self, ctx):
        router = APIRouter()

        @router.get("/value")
        async def value() -> dict:
            return {{"value": {value!r}}}

        ctx.http.include_router(router)
"""


async def test_live_reload_runs_inside_the_lifespan(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    """With live_reload the lifespan watches plugin files; the startup line names the plugins."""
    project.plugins.write("alpha", ROUTE.format(value="one"))
    project.plugins.write("broken", "def broken(:\n")
    project.configure(server={"host": "0.0.0.0", "port": 8100})
    app = build_app(load_app_config(project.config), live_reload=True)
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.INFO, logger="nexus"):
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            assert (await client.get("/api/alpha/value")).json() == {"value": "one"}
            (project.plugins.root / "alpha" / "plugin.py").write_text(ROUTE.format(value="two!"))
            for _ in range(1000):  # bounded wait for the watcher, not a timing assertion
                if (await client.get("/api/alpha/value")).json() == {"value": "two!"}:
                    break
                await asyncio.sleep(0.02)
            assert (await client.get("/api/alpha/value")).json() == {"value": "two!"}
    summary = next(r.getMessage() for r in caplog.records if r.name == "nexus.server")
    assert "serving http://0.0.0.0:8100 (environment development, pid " in summary
    assert (
        ", live reload); 1 of 2 plugins active: alpha; not running: broken (failed at import:"
        in (summary)
    )
    assert "Reloaded plugin alpha: active" in caplog.text
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "nexus plugin watcher"]


async def test_without_live_reload_nothing_watches(project: Project) -> None:
    """Without live_reload no watcher task runs."""
    project.plugins.write("alpha", ROUTE.format(value="one"))
    app = build_app(load_app_config(project.config))
    async with app.router.lifespan_context(app):
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "nexus plugin watcher"]


def test_server_url_brackets_ipv6() -> None:
    """IPv6 hosts are bracketed in the URL."""
    assert server_url("::1", 8000) == "http://[::1]:8000"
    assert server_url("127.0.0.1", 80) == "http://127.0.0.1:80"


def test_logging_config_sends_nexus_logs_to_stderr_at_the_level() -> None:
    """The uvicorn logging config gains a `nexus` logger at the chosen level."""
    config = logging_config("debug")
    assert config["loggers"]["nexus"] == {
        "handlers": ["nexus"],
        "level": "DEBUG",
        "propagate": False,
    }
    assert config["handlers"]["nexus"]["stream"] == "ext://sys.stderr"
    assert "uvicorn.access" in config["loggers"]

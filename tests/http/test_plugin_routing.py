"""Plugin dispatch under change: swaps during reload, drains on stop, and no failed requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter
from tests.conftest import PluginWriter
from tests.http.test_app import assert_problem, build_app, serve

from nexus import Plugin, PluginContext, PluginState

S = PluginState


class Versioned(Plugin):
    """Serves its setup count as `version`; `/slow` holds requests, setups after the first wait."""

    manifest = {"name": "swap", "version": "1.0.0", "description": "Swapped while serving"}

    def __init__(self, *, route_delay: float = 0.3, setup_delay: float = 0.2) -> None:
        self.route_delay, self.setup_delay = route_delay, setup_delay
        self.version = 0
        self.entered = 0
        self.fail_next_setup = False

    async def setup(self, ctx: PluginContext[Any]) -> None:
        if self.version:
            await asyncio.sleep(self.setup_delay)
        if self.fail_next_setup:
            self.fail_next_setup = False
            raise RuntimeError("new version is broken")
        self.version += 1
        version = self.version
        router = APIRouter()

        @router.get("/slow")
        async def slow() -> dict[str, int]:
            self.entered += 1
            await asyncio.sleep(self.route_delay)
            return {"version": version}

        @router.get("/fast")
        async def fast() -> dict[str, int]:
            return {"version": version}

        ctx.http.include_router(router)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the event loop run until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def versions(responses: list[httpx.Response]) -> list[tuple[int, int]]:
    return [(response.status_code, response.json().get("version", 0)) for response in responses]


async def test_reload_finishes_in_flight_requests_and_holds_new_ones(tmp_path: Path) -> None:
    """In-flight requests complete on the old version; requests during the swap get the new one."""
    plugin = Versioned(route_delay=0.3, setup_delay=0.2)
    app = build_app(tmp_path, plugin)
    async with serve(app) as client:
        in_flight = [asyncio.create_task(client.get("/api/swap/slow")) for _ in range(5)]
        await until(lambda: plugin.entered == 5)
        reload = asyncio.create_task(app.kernel.plugins.reload("swap"))
        await until(lambda: app.kernel.plugins.status("swap").state is not S.ACTIVE)
        during = [asyncio.create_task(client.get("/api/swap/fast")) for _ in range(5)]
        await asyncio.sleep(0.1)
        assert not any(task.done() for task in during)  # held, neither failed nor served old
        status = await reload
        old = await asyncio.gather(*in_flight)
        new = await asyncio.gather(*during)
        after = await client.get("/api/swap/fast")
    assert status.state is S.ACTIVE
    assert versions(old) == [(200, 1)] * 5
    assert versions(new) == [(200, 2)] * 5
    assert versions([after]) == [(200, 2)]


async def test_reload_slower_than_the_swap_timeout_answers_503_with_retry_after(
    tmp_path: Path,
) -> None:
    """A request held past swap_timeout gets a 503 problem; once swapped, requests succeed."""
    plugin = Versioned(setup_delay=1.0)
    app = build_app(tmp_path, plugin)
    app.dispatcher.swap_timeout = 0.2
    async with serve(app) as client:
        reload = asyncio.create_task(app.kernel.plugins.reload("swap"))
        await until(lambda: app.kernel.plugins.status("swap").state is not S.ACTIVE)
        began = time.monotonic()
        held = await client.get("/api/swap/fast")
        waited = time.monotonic() - began
        await reload
        after = await client.get("/api/swap/fast")
    body = assert_problem(held, 503)
    assert body["detail"] == "Plugin 'swap' is being reloaded; retry shortly."
    assert held.headers["retry-after"] == "1"
    assert 0.15 <= waited < 0.9
    assert versions([after]) == [(200, 2)]


async def test_failed_reload_releases_held_requests_with_a_problem(tmp_path: Path) -> None:
    """If the new version fails to start, held requests are answered at once, not left hanging."""
    plugin = Versioned(setup_delay=0.2)
    app = build_app(tmp_path, plugin)
    async with serve(app) as client:
        plugin.fail_next_setup = True
        reload = asyncio.create_task(app.kernel.plugins.reload("swap"))
        await until(lambda: app.kernel.plugins.status("swap").state is not S.ACTIVE)
        held = asyncio.create_task(client.get("/api/swap/fast"))
        status = await reload
        response = await asyncio.wait_for(held, 2)
        ready = await client.get("/readyz")
    assert status.state is S.FAILED
    assert_problem(response, 404)
    assert ready.status_code == 503


async def test_no_request_fails_while_a_plugin_is_reloaded_repeatedly(tmp_path: Path) -> None:
    """Steady traffic during 20 reloads: every request is a 200, and versions only move forward."""
    plugin = Versioned(route_delay=0.01, setup_delay=0.01)
    app = build_app(tmp_path, plugin, http={"rate_limit": {"enabled": False}})
    seen: list[list[tuple[int, int]]] = [[] for _ in range(8)]
    stop = asyncio.Event()

    async def worker(client: httpx.AsyncClient, path: str, log: list[tuple[int, int]]) -> None:
        while not stop.is_set():
            response = await client.get(path)
            log.append((response.status_code, response.json().get("version", 0)))
            await asyncio.sleep(0)  # an in-process request need not suspend: let others run

    async with serve(app) as client:
        workers = [
            asyncio.create_task(worker(client, f"/api/swap/{('fast', 'slow')[i % 2]}", log))
            for i, log in enumerate(seen)
        ]
        await asyncio.sleep(0.02)
        for _ in range(20):
            await app.kernel.plugins.reload("swap")
            await asyncio.sleep(0.005)
        stop.set()
        await asyncio.gather(*workers)
    results = [result for log in seen for result in log]
    assert {status for status, _ in results} == {200}
    assert len(results) > 100
    for log in seen:
        assert [version for _, version in log] == sorted(version for _, version in log)
    assert max(version for _, version in results) == 21


async def test_reload_serves_the_edited_code_of_a_directory_plugin(
    tmp_path: Path, plugins: PluginWriter
) -> None:
    """Reload re-imports the plugin's module: changed answers and new routes, also in OpenAPI."""
    code = """
    from fastapi import APIRouter
    from nexus import Plugin

    class Main(Plugin):
        async def setup(self, ctx):
            router = APIRouter()

            @router.get("/greeting")
            async def greeting():
                return {{"text": "{text}"}}
            {extra}
            ctx.http.include_router(router, prefix="/v1")
    """
    extra = """
            @router.get("/farewell")
            async def farewell():
                return {"text": "bye"}
    """
    plugins.write("greeter", code.format(text="hello", extra=""), description="Greets")
    app = build_app(tmp_path, plugin_paths=[str(plugins.root)])
    async with serve(app) as client:
        before = await client.get("/api/greeter/v1/greeting")
        missing = await client.get("/api/greeter/v1/farewell")
        plugins.write("greeter", code.format(text="howdy", extra=extra), description="Greets")
        await app.kernel.plugins.reload("greeter")
        after = await client.get("/api/greeter/v1/greeting")
        added = await client.get("/api/greeter/v1/farewell")
        schema = (await client.get("/openapi.json")).json()
    assert before.json() == {"text": "hello"}
    assert_problem(missing, 404)
    assert after.json() == {"text": "howdy"}
    assert added.status_code == 200 and added.json() == {"text": "bye"}
    assert {"/api/greeter/v1/greeting", "/api/greeter/v1/farewell"} <= set(schema["paths"])
    assert {"name": "greeter", "description": "Greets"} in schema["tags"]


async def test_disable_drains_in_flight_requests_and_refuses_new_ones(tmp_path: Path) -> None:
    """Disable lets running requests finish; requests arriving meanwhile get 404 without waiting."""
    plugin = Versioned(route_delay=0.3)
    app = build_app(tmp_path, plugin)
    async with serve(app) as client:
        in_flight = asyncio.create_task(client.get("/api/swap/slow"))
        await until(lambda: plugin.entered == 1)
        disable = asyncio.create_task(app.kernel.plugins.disable("swap"))
        await until(lambda: app.kernel.plugins.status("swap").state is not S.ACTIVE)
        began = time.monotonic()
        refused = await client.get("/api/swap/fast")
        refused_after = time.monotonic() - began
        assert not in_flight.done()
        await disable
        finished = await in_flight
    assert versions([finished]) == [(200, 1)]
    assert_problem(refused, 404)
    assert refused_after < 0.2


async def test_unload_waits_for_in_flight_requests(tmp_path: Path) -> None:
    """Unload returns only after the plugin's running requests have been answered."""
    plugin = Versioned(route_delay=0.2)
    app = build_app(tmp_path, plugin)
    async with serve(app) as client:
        in_flight = asyncio.create_task(client.get("/api/swap/slow"))
        await until(lambda: plugin.entered == 1)
        await app.kernel.plugins.unload("swap")
        assert in_flight.done()
        finished = in_flight.result()
        gone = await client.get("/api/swap/fast")
    assert versions([finished]) == [(200, 1)]
    assert_problem(gone, 404)


def numbered(index: int) -> Plugin:
    class Numbered(Plugin):
        manifest = {"name": f"p{index:03d}", "version": "1.0.0"}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            router = APIRouter()

            @router.get("/who")
            async def who() -> dict[str, int]:
                return {"index": index}

            ctx.http.include_router(router)

    return Numbered()


async def test_each_request_reaches_the_plugin_named_by_its_first_segment(tmp_path: Path) -> None:
    """With many plugins, /api/<name>/... goes to exactly that plugin, by its whole name."""

    class Shop(Plugin):
        manifest = {"name": "shop", "version": "1.0.0"}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            router = APIRouter()

            @router.get("/who")
            async def who() -> dict[str, str]:
                return {"plugin": "shop"}

            ctx.http.include_router(router)

    app = build_app(tmp_path, Shop(), *(numbered(i) for i in range(120)))
    async with serve(app) as client:
        answers = [(await client.get(f"/api/p{i:03d}/who")).json() for i in (0, 57, 119)]
        shop = await client.get("/api/shop/who")
        prefix_only = await client.get("/api/sho/who")
        longer = await client.get("/api/shopping/who")
    assert answers == [{"index": 0}, {"index": 57}, {"index": 119}]
    assert shop.json() == {"plugin": "shop"}
    assert_problem(prefix_only, 404)
    assert assert_problem(longer, 404)["detail"] == "No plugin serves '/api/shopping/who'."

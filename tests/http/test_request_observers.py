"""`ctx.http.observe_requests`: one status and one clock per request for every observer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from starlette.responses import StreamingResponse
from tests.http.test_app import build_app, serve

from nexus import Plugin, PluginContext

Seen = list[tuple[str | None, str, int, bool]]


class Watcher(Plugin):
    """Serves a JSON route, a failing one and a streamed one; records what its observer sees."""

    def __init__(self, name: str, seen: Seen, *, fail: bool = False) -> None:
        self.manifest = {"name": name, "version": "1.0.0"}
        self.seen, self.fail = seen, fail

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.get("/ok")
        async def ok() -> dict[str, bool]:
            return {"ok": True}

        @router.get("/boom")
        async def boom() -> None:
            raise RuntimeError("boom")

        @router.get("/stream")
        async def stream() -> StreamingResponse:
            async def parts() -> AsyncIterator[bytes]:
                yield b"a"
                yield b"b"

            return StreamingResponse(parts(), media_type="text/plain")

        def observe(
            plugin: str | None, scope: Any, status: int, seconds: float, streamed: bool
        ) -> None:
            assert seconds >= 0
            if self.fail:
                raise ValueError("observer bug")
            self.seen.append((plugin, scope["path"], status, streamed))

        ctx.http.include_router(router)
        ctx.http.observe_requests(observe)


async def test_observers_see_plugin_status_and_streaming_of_every_request(tmp_path: Path) -> None:
    """Each observer learns who served a request, its final status and whether it streamed."""
    seen: Seen = []
    app = build_app(tmp_path, Watcher("watch", seen))
    async with serve(app) as client:
        assert (await client.get("/api/watch/ok")).status_code == 200
        assert (await client.get("/api/watch/boom")).status_code == 500
        assert (await client.get("/api/watch/stream")).text == "ab"
        assert (await client.get("/api/nobody/here")).status_code == 404
        assert (await client.get("/livez")).status_code == 200
    assert seen == [
        ("watch", "/api/watch/ok", 200, False),
        ("watch", "/api/watch/boom", 500, False),
        ("watch", "/api/watch/stream", 200, True),
        (None, "/api/nobody/here", 404, False),
        (None, "/livez", 200, False),
    ]


async def test_a_failing_observer_is_logged_and_neither_the_request_nor_others_suffer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An observer that raises is logged; the response and the other observers are unaffected."""
    broken: Seen = []
    healthy: Seen = []
    app = build_app(tmp_path, Watcher("alpha", broken, fail=True), Watcher("beta", healthy))
    with caplog.at_level(logging.ERROR, logger="nexus.http"):
        async with serve(app) as client:
            response = await client.get("/api/beta/ok")
    assert response.status_code == 200
    assert healthy == [("beta", "/api/beta/ok", 200, False)]
    assert "Request observer" in caplog.text and "observer bug" in caplog.text


async def test_observers_stop_with_their_plugin_and_return_with_it(tmp_path: Path) -> None:
    """A disabled plugin's observer sees nothing; enabled again, it observes again."""
    seen: Seen = []
    app = build_app(tmp_path, Watcher("watch", seen))
    async with serve(app) as client:
        await client.get("/livez")
        await app.kernel.plugins.disable("watch")
        await client.get("/livez")
        await app.kernel.plugins.enable("watch")
        await client.get("/livez")
    assert [path for _, path, _, _ in seen] == ["/livez", "/livez"]


async def test_observe_requests_refuses_what_is_not_callable(tmp_path: Path) -> None:
    """A non-callable observer fails the plugin's setup with a message naming the plugin."""

    class Wrong(Plugin):
        manifest = {"name": "wrong", "version": "1.0.0"}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            ctx.http.observe_requests("not a function")  # type: ignore[arg-type]

    app = build_app(tmp_path, Wrong())
    async with serve(app):
        status = app.kernel.plugins.status("wrong")
    assert status.state.value == "failed"
    assert "observe_requests() takes a callable" in (status.reason or "")

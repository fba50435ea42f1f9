"""One structured JSON access log line per request on the nexus.access logger."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from nexus.http.access_log import AccessLogMiddleware
from nexus.http.request_id import RequestIdMiddleware
from nexus.http.types import Receive, Scope, Send

Connect = Callable[..., httpx.AsyncClient]


def _with_user(app: FastAPI, user: object) -> Callable[[Scope, Receive, Send], object]:
    async def authenticated(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["user"] = user
        await app(scope, receive, send)

    return authenticated


async def test_each_request_is_one_json_line(
    app: FastAPI, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """The line has time, request id, method, path (no query), status, duration and client."""
    stack = RequestIdMiddleware(AccessLogMiddleware(app))
    with caplog.at_level(logging.INFO, logger="nexus.access"):
        async with connect(stack, client=("203.0.113.9", 4000)) as client:
            await client.get("/hello?token=secret", headers={"X-Request-ID": "log-1"})
    [record] = [r for r in caplog.records if r.name == "nexus.access"]
    entry = json.loads(record.getMessage())
    logged_at = entry.pop("time")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", logged_at)
    age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(logged_at)
    assert dt.timedelta(0) <= age < dt.timedelta(minutes=1)
    assert isinstance(entry.pop("duration_ms"), float)
    assert entry == {
        "request_id": "log-1",
        "method": "GET",
        "path": "/hello",
        "status": 200,
        "client": "203.0.113.9",
        "user": None,
    }
    assert record.access["status"] == 200  # type: ignore[attr-defined]


async def test_user_from_scope_state_is_logged(
    app: FastAPI, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """A user put in scope state by an auth layer appears in the line by id."""
    stack = AccessLogMiddleware(_with_user(app, SimpleNamespace(id=42, name="alice")))
    with caplog.at_level(logging.INFO, logger="nexus.access"):
        async with connect(stack) as client:
            await client.get("/nowhere")
    [record] = [r for r in caplog.records if r.name == "nexus.access"]
    entry = json.loads(record.getMessage())
    assert entry["user"] == "42"
    assert entry["status"] == 404


async def test_nothing_is_logged_below_info(
    app: FastAPI, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """With nexus.access at WARNING, requests are served and no record is made."""
    with caplog.at_level(logging.WARNING, logger="nexus.access"):
        async with connect(AccessLogMiddleware(app)) as client:
            response = await client.get("/hello")
    assert response.status_code == 200
    assert [r for r in caplog.records if r.name == "nexus.access"] == []


async def test_a_crash_before_responding_is_logged_as_500(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """If the app raises without responding, the line still appears, with status 500."""

    async def crashing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.INFO, logger="nexus.access"):
        async with connect(AccessLogMiddleware(crashing), raise_app_exceptions=False) as client:
            await client.get("/")
    [record] = [r for r in caplog.records if r.name == "nexus.access"]
    assert json.loads(record.getMessage())["status"] == 500

"""Every error the app produces is an RFC 9457 application/problem+json response."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse

from nexus.http.exception_handlers import install_problem_handlers
from nexus.http.problems import ProblemResponse, problem_body
from nexus.http.request_id import RequestIdMiddleware
from nexus.http.types import Message, Receive, Scope, Send

Connect = Callable[..., httpx.AsyncClient]

PROBLEM = "application/problem+json"


def test_problem_body_defaults_title_to_the_reason_phrase() -> None:
    """A bare problem has type about:blank, the RFC 9110 phrase as title, and no empty members."""
    assert orjson.loads(problem_body(413)) == {
        "type": "about:blank",
        "title": "Content Too Large",
        "status": 413,
    }


def test_problem_body_keeps_detail_instance_and_extensions() -> None:
    """Detail, instance and extension members all appear in the body."""
    body = orjson.loads(
        problem_body(409, title="Taken", detail="Name taken.", instance="/users/7", field="name")
    )
    assert body == {
        "type": "about:blank",
        "title": "Taken",
        "status": 409,
        "detail": "Name taken.",
        "instance": "/users/7",
        "field": "name",
    }


async def test_problem_response_is_problem_json(connect: Connect) -> None:
    """ProblemResponse sends its status with the problem+json media type."""
    app = FastAPI()

    @app.get("/gone")
    async def gone() -> ProblemResponse:
        return ProblemResponse(410, detail="Moved to /v2.", headers={"Link": "</v2>"})

    async with connect(app) as client:
        response = await client.get("/gone")
    assert response.status_code == 410
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["link"] == "</v2>"
    assert response.json()["detail"] == "Moved to /v2."


async def test_unknown_route_is_a_404_problem(app: FastAPI, connect: Connect) -> None:
    """An unknown path answers 404 as problem+json with the reason phrase as title."""
    async with connect(app) as client:
        response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {"type": "about:blank", "title": "Not Found", "status": 404}


async def test_wrong_method_is_a_405_problem_with_allow(app: FastAPI, connect: Connect) -> None:
    """A known path with the wrong method answers 405 and keeps the Allow header."""
    async with connect(app) as client:
        response = await client.delete("/hello")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["allow"] == "GET"
    assert response.json()["title"] == "Method Not Allowed"


async def test_raised_http_exception_keeps_detail_and_headers(
    app: FastAPI, connect: Connect
) -> None:
    """A route's HTTPException keeps its status, detail and headers."""
    async with connect(app) as client:
        response = await client.get("/teapot")
    assert response.status_code == 418
    assert response.headers["x-tea"] == "earl grey"
    assert response.json()["detail"] == "Short and stout."


async def test_non_string_detail_becomes_data(app: FastAPI, connect: Connect) -> None:
    """A structured HTTPException detail is kept as the `data` member, not as `detail`."""
    async with connect(app) as client:
        body = (await client.get("/structured")).json()
    assert "detail" not in body
    assert body["data"] == {"conflicts_with": "alice"}


async def test_bodiless_statuses_stay_bodiless(connect: Connect) -> None:
    """An HTTPException for 304 keeps its headers and gets no problem body."""
    app = FastAPI()

    @app.get("/cached")
    async def cached() -> None:
        raise HTTPException(304, headers={"ETag": '"v1"'})

    install_problem_handlers(app, debug=False)
    async with connect(app) as client:
        response = await client.get("/cached")
    assert response.status_code == 304
    assert response.headers["etag"] == '"v1"'
    assert response.content == b""


async def test_client_disconnect_is_neither_answered_nor_logged(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that leaves while its body is read gets no response and logs no error."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "raw_path": b"/upload",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-length", b"5")],
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    with caplog.at_level(logging.ERROR):
        await app(scope, receive, send)
    assert sent == []
    assert caplog.records == []


async def test_validation_error_lists_errors_without_echoing_input(
    app: FastAPI, connect: Connect
) -> None:
    """A 422 lists loc/msg/type of each error and never echoes the submitted values."""
    payload = {"name": "box", "password": "s3cr3t-value", "quantity": "many"}
    async with connect(app) as client:
        response = await client.post("/items", json=payload)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["title"] == "Unprocessable Content"
    assert body["errors"] == [
        {
            "loc": ["body", "quantity"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        }
    ]
    assert "s3cr3t-value" not in response.text
    assert "many" not in response.text


async def test_server_error_hides_the_exception_in_production(
    app: FastAPI, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500 in production is generic, carries X-Request-ID, and is logged with that id."""
    with caplog.at_level(logging.ERROR, logger="nexus.http"):
        async with connect(RequestIdMiddleware(app)) as client:
            response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["x-request-id"] == "req-500"
    body = response.json()
    assert body["request_id"] == "req-500"
    assert "traceback" not in body
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    [record] = caplog.records
    assert record.request_id == "req-500"  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert "req-500" in record.getMessage()


async def test_server_error_shows_the_traceback_in_debug(
    debug_app: FastAPI, connect: Connect
) -> None:
    """In debug mode the 500 problem names the exception, has its traceback and request id."""
    async with connect(RequestIdMiddleware(debug_app)) as client:
        response = await client.get("/boom", headers={"X-Request-ID": "req-debug"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["x-request-id"] == "req-debug"
    body = response.json()
    assert body["request_id"] == "req-debug"
    assert body["detail"] == "RuntimeError: database password is hunter2"
    assert body["exception"] == "builtins.RuntimeError"
    assert 'raise RuntimeError("database password is hunter2")' in body["traceback"]


async def test_error_in_outer_user_middleware_is_a_problem(app: FastAPI, connect: Connect) -> None:
    """An exception from middleware added after the handlers still yields a 500 problem."""

    class Broken:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                raise RuntimeError("middleware secret")
            await self.app(scope, receive, send)

    app.add_middleware(Broken)
    async with connect(app, raise_app_exceptions=False) as client:
        response = await client.get("/hello")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert "middleware secret" not in response.text


async def test_failure_after_the_response_started_reaches_the_server(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream failing midway is logged with its request id and re-raised to the server."""
    app = FastAPI()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first chunk"
            raise RuntimeError("stream broke")

        return StreamingResponse(chunks())

    install_problem_handlers(app, debug=False)
    with caplog.at_level(logging.ERROR, logger="nexus.http"):
        async with connect(RequestIdMiddleware(app)) as client:
            with pytest.raises(RuntimeError, match="stream broke"):
                await client.get("/stream", headers={"X-Request-ID": "req-stream"})
    [record] = caplog.records
    assert "(request id req-stream)" in record.getMessage()


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/forbidden", 403, "Plugin 'billing' lacks permission"),
        ("/missing", 404, "No plugin named 'billing' is installed. Installed plugins: auth"),
        ("/invalid", 400, "Topic 'user..created' has an empty segment."),
    ],
)
async def test_nexus_errors_map_to_client_errors(
    app: FastAPI, connect: Connect, path: str, status: int, detail: str
) -> None:
    """PermissionError, LookupError and ValueError NexusErrors become 403, 404 and 400."""
    async with connect(app) as client:
        response = await client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"].startswith(detail)


async def test_other_nexus_errors_are_server_errors(app: FastAPI, connect: Connect) -> None:
    """A NexusError outside those three families is a generic 500, its message hidden."""
    async with connect(app) as client:
        response = await client.get("/wrong-state")
    assert response.status_code == 500
    assert "internal detail" not in response.text


async def test_unsupported_media_type_is_a_415_problem(app: FastAPI, connect: Connect) -> None:
    """UnsupportedMediaTypeError answers 415 naming what was sent and what is accepted."""
    async with connect(app) as client:
        response = await client.post(
            "/unsupported", content=b"<a/>", headers={"Content-Type": "application/xml"}
        )
    assert response.status_code == 415
    body = response.json()
    assert body["supported"] == ["application/json"]
    assert "'application/xml'" in body["detail"]


async def test_service_unavailable_is_a_503_problem(app: FastAPI, connect: Connect) -> None:
    """ServiceUnavailableError answers 503 with its detail and Retry-After."""
    async with connect(app) as client:
        response = await client.get("/unavailable")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.json()["detail"] == "The database is restarting."

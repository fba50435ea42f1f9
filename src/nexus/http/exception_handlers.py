"""Turn every error FastAPI or Starlette produces into an RFC 9457 problem response."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from nexus.errors import EventQueueFullError, NexusError, TransportError
from nexus.http.problems import ProblemError, ProblemResponse
from nexus.http.request_id import get_request_id
from nexus.http.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("nexus.http")

_LOGGED_KEY = "nexus.logged_error"
_TRANSPORT_DETAIL = (
    "The event transport is unavailable, so this request's events could not be sent. "
    "Try again shortly."
)
_UNREACHABLE_DETAIL = "A service this request needs is unreachable right now. Try again shortly."
_BUSY_DETAIL = "The server is too busy to take this request's events right now. Try again shortly."
_GENERIC_DETAIL = (
    "The server could not handle this request. If it keeps happening, report the request id."
)


def install_problem_handlers(app: FastAPI, *, debug: bool) -> None:
    """Make every error ``app`` produces a problem: 4xx from routing and validation, 500s too.

    - ``HTTPException`` (404 unknown route, 405 with its ``Allow`` header, anything raised):
      its status, headers and string detail; a non-string detail becomes the ``data`` member.
    - ``RequestValidationError``: 422 with ``errors`` (``loc``, ``msg``, ``type`` of each; the
      offending ``input`` and ``ctx`` are dropped so secrets are never echoed back).
    - ``NexusError``: a ``PermissionError`` is 403, a ``LookupError`` 404 and a ``ValueError``
      400, with the error's message (written for users) as ``detail``; a ``TransportError``
      (the event transport, say Redis, is unreachable) is a 503 with ``Retry-After``, logged,
      its message (which names the server) shown only in ``debug``; so is any other
      ``ConnectionError`` (a server a plugin needs, such as the cache's Redis, is unreachable)
      and an ``EventQueueFullError`` (a subscriber's queue stayed full: overload, ``Retry-After:
      1``); any other is a 500.
    - Any other exception: 500, logged on ``nexus.http`` with the request id. Only in
      ``debug`` does the body show the exception and a ``traceback``.

    FastAPI's own ``ServerErrorMiddleware`` ignores handlers in debug mode and answers with an
    HTML traceback, so this also adds ``ServerErrorProblemMiddleware`` inside it, which answers
    (and logs) first. Call it after other ``app.add_middleware`` calls so that it wraps them
    too; errors from middleware added later reach the ``Exception`` handler installed here
    (in production) or Starlette's HTML page (in debug).
    """
    handlers = _ProblemHandlers(debug=debug)
    _add_handler(app, HTTPException, handlers.http_exception)
    _add_handler(app, RequestValidationError, handlers.validation_error)
    _add_handler(app, NexusError, handlers.nexus_error)
    _add_handler(app, Exception, handlers.server_error)
    app.add_middleware(ServerErrorProblemMiddleware, debug=debug)


def _add_handler(
    app: FastAPI,
    exc_class: type[Exception],
    handler: Callable[[Request, Any], Awaitable[Response]],
) -> None:
    # Starlette types every handler as taking Exception; each of ours takes only the class it
    # is registered for, which Starlette guarantees.
    app.add_exception_handler(exc_class, handler)


class _ProblemHandlers:
    def __init__(self, *, debug: bool) -> None:
        self.debug = debug

    async def http_exception(self, request: Request, exc: HTTPException) -> Response:
        status = exc.status_code
        if status < 200 or status in (204, 205, 304):
            return Response(status_code=status, headers=exc.headers)
        title: str | None = None
        problem_type = "about:blank"
        extensions: dict[str, Any] = {}
        if isinstance(exc, ProblemError):
            title, problem_type, extensions = exc.title, exc.type, dict(exc.extensions)
        detail: str | None
        if isinstance(exc.detail, str):
            # HTTPException fills in the reason phrase when raised without a detail.
            detail = None if exc.detail == _python_phrase(status) else exc.detail
        else:
            detail = None
            extensions["data"] = exc.detail
        return ProblemResponse(
            status,
            title=title,
            detail=detail,
            type=problem_type,
            headers=exc.headers,
            **extensions,
        )

    async def validation_error(self, request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors()
        ]
        count = len(errors)
        return ProblemResponse(
            422,
            detail=f"The request is invalid ({count} problem{'s' if count != 1 else ''}).",
            errors=errors,
        )

    async def nexus_error(self, request: Request, exc: NexusError) -> Response:
        if isinstance(exc, PermissionError):
            status = 403
        elif isinstance(exc, LookupError):
            status = 404
        elif isinstance(exc, ValueError):
            status = 400
        elif isinstance(exc, TransportError):
            request_id = get_request_id(request.scope)
            logger.warning("Request %s: %s", request_id, exc)
            detail = f"{_TRANSPORT_DETAIL} {exc}" if self.debug else _TRANSPORT_DETAIL
            return ProblemResponse(503, detail=detail, headers={"Retry-After": "5"})
        elif isinstance(exc, ConnectionError | EventQueueFullError):
            # A lost dependency or an overload is the server's condition, not a bug: 503 with a
            # retry hint and one warning line, rather than a 500 with a traceback per request.
            request_id = get_request_id(request.scope)
            logger.warning("Request %s: %s", request_id, exc)
            busy = isinstance(exc, EventQueueFullError)
            detail = _BUSY_DETAIL if busy else _UNREACHABLE_DETAIL
            detail = f"{detail} {exc}" if self.debug else detail
            return ProblemResponse(
                503, detail=detail, headers={"Retry-After": "1" if busy else "5"}
            )
        else:
            return self.server_error_response(request.scope, exc)
        return ProblemResponse(status, detail=str(exc))

    async def server_error(self, request: Request, exc: Exception) -> Response:
        return self.server_error_response(request.scope, exc)

    def server_error_response(self, scope: Scope, exc: Exception) -> Response:
        request_id = _log_unhandled(scope, exc)
        extensions: dict[str, Any] = {}
        if request_id is not None:
            extensions["request_id"] = request_id
        if not self.debug:
            return ProblemResponse(500, detail=_GENERIC_DETAIL, **extensions)
        return ProblemResponse(
            500,
            detail=f"{type(exc).__name__}: {exc}",
            exception=f"{type(exc).__module__}.{type(exc).__qualname__}",
            traceback="".join(traceback.format_exception(exc)),
            **extensions,
        )


class ServerErrorProblemMiddleware:
    """Answer an unhandled exception with a 500 problem (and log it) before FastAPI's own does.

    The exception is not re-raised once the 500 is sent and logged here: the server would only
    log it a second time, without the request id. If the response had already started, it is
    logged and re-raised, so the server aborts the connection rather than end a truncated body
    as if it were whole.
    """

    def __init__(self, app: ASGIApp, *, debug: bool) -> None:
        self.app = app
        self._handlers = _ProblemHandlers(debug=debug)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        is_started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal is_started
            if message["type"] == "http.response.start":
                is_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking_start)
        except ClientDisconnect:
            return  # nobody is left to answer
        except Exception as exc:
            if is_started:
                _log_unhandled(scope, exc)
                raise
            response = self._handlers.server_error_response(scope, exc)
            await response(scope, receive, send)


def _log_unhandled(scope: Scope, exc: Exception) -> str | None:
    request_id = get_request_id(scope)
    # A re-raised exception comes back through FastAPI's ServerErrorMiddleware, which calls
    # its handler (this module's, again) even when it cannot send the response.
    if scope.get(_LOGGED_KEY) is exc:
        return request_id
    scope[_LOGGED_KEY] = exc
    logger.error(
        "Unhandled %s in %s %s (request id %s)",
        type(exc).__name__,
        scope.get("method"),
        scope.get("path"),
        request_id,
        exc_info=exc,
        extra={"request_id": request_id},
    )
    return request_id


def _python_phrase(status: int) -> str | None:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return None

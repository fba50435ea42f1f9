"""RFC 9457 problem details: every HTTP error as an ``application/problem+json`` body."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

import orjson
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.responses import Response

from nexus.http.types import Send

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"

_CONTENT_TYPE_HEADER: Final = (b"content-type", PROBLEM_CONTENT_TYPE.encode("latin-1"))

# RFC 9110 renamed these two; Python < 3.13 still has the RFC 7231 phrases.
_PHRASES: Final[dict[int, str]] = {status.value: status.phrase for status in HTTPStatus} | {
    413: "Content Too Large",
    422: "Unprocessable Content",
}


def status_title(status: int) -> str:
    """Return the RFC 9110 reason phrase of ``status``: an ``about:blank`` problem's title."""
    return _PHRASES.get(status, "Error")


def problem_body(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type: str = "about:blank",
    instance: str | None = None,
    **extensions: Any,
) -> bytes:
    """Serialise a problem details object; ``title`` defaults to the status's reason phrase."""
    body: dict[str, Any] = {"type": type, "title": title or status_title(status), "status": status}
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    if extensions:
        body.update(extensions)
    # `default=str`: an error response must not fail on an extension orjson cannot encode.
    return orjson.dumps(body, default=str)


async def send_problem(
    send: Send,
    status: int,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    title: str | None = None,
    detail: str | None = None,
    type: str = "about:blank",
    instance: str | None = None,
    **extensions: Any,
) -> None:
    """Send a complete problem response from an ASGI middleware; ``headers`` are raw ASGI pairs."""
    body = problem_body(
        status, title=title, detail=detail, type=type, instance=instance, **extensions
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                _CONTENT_TYPE_HEADER,
                (b"content-length", str(len(body)).encode("latin-1")),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ProblemResponse(Response):
    """A Starlette response whose body is an RFC 9457 problem."""

    media_type = PROBLEM_CONTENT_TYPE

    def __init__(
        self,
        status_code: int,
        *,
        title: str | None = None,
        detail: str | None = None,
        type: str = "about:blank",
        instance: str | None = None,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        **extensions: Any,
    ) -> None:
        body = problem_body(
            status_code, title=title, detail=detail, type=type, instance=instance, **extensions
        )
        super().__init__(body, status_code=status_code, headers=headers, background=background)


class ProblemError(HTTPException):
    """An HTTPException that renders as a problem with its own type, title and extension members.

    Raise it from a route: ``raise ProblemError(409, "Name taken", type="/problems/conflict")``.
    """

    def __init__(
        self,
        status_code: int,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        title: str | None = None,
        type: str = "about:blank",
        **extensions: Any,
    ) -> None:
        super().__init__(status_code, detail, headers)
        self.title = title
        self.type = type
        self.extensions = extensions


class UnsupportedMediaTypeError(ProblemError):
    """415: the request body's Content-Type is not one the route accepts."""

    def __init__(self, media_type: str | None, supported: Sequence[str]) -> None:
        sent = repr(media_type) if media_type else "no Content-Type"
        super().__init__(
            415,
            f"This endpoint does not accept {sent}. Send one of: {', '.join(supported)}.",
            supported=list(supported),
        )


class ServiceUnavailableError(ProblemError):
    """503: a dependency is down or the service is overloaded; retry later."""

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None) -> None:
        headers = None if retry_after is None else {"Retry-After": str(retry_after)}
        super().__init__(503, detail, headers=headers)

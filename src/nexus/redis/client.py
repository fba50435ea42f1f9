"""Opening Redis clients: one way for every Nexus part, with the URL's password kept out of logs.

`redis` (the `redis` extra) is imported when a client is opened, never with this module.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: What to install when the Redis client is missing.
REDIS_EXTRA: Final = "pip install 'nexus-platform[redis]'"
#: URL schemes redis-py understands.
REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")

_MASK: Final = "**********"


def redact_url(url: str) -> str:
    """`url` with its password (in the user info or a `password` parameter) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{_MASK}@{host}" if has_password else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, _MASK if k == "password" else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    redacted = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    if not netloc and url.startswith(f"{parts.scheme}://"):  # unix:///path keeps its slashes
        redacted = f"{parts.scheme}://{redacted[len(parts.scheme) + 1 :]}"
    return redacted


def check_url(url: str) -> str:
    """Return `url` if it names a Redis server; ValueError (password masked) otherwise."""
    if not url.startswith(REDIS_SCHEMES):
        raise ValueError(
            f"{redact_url(url)!r} is not a Redis URL: write redis://[:password@]host[:port][/db], "
            f"rediss://... for TLS, or unix:///path/to/redis.sock"
        )
    return url


def open_redis(
    url: str, *, timeout: float, retries: int = 1, decode_responses: bool = False, who: str
) -> Redis:
    """A redis-py asyncio client for `url` (connections are made on first use).

    `timeout` bounds connecting and every answer; a command is retried `retries` times after
    a connection error, with a short backoff. `who` names the user in the error raised when
    the `redis` extra is missing, e.g. "The scheduler plugin".
    """
    try:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff
    except ImportError as exc:
        raise ImportError(f"{who} needs the Redis client: {REDIS_EXTRA}") from exc
    check_url(url)
    try:
        return Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), retries),
            decode_responses=decode_responses,
        )
    except ValueError as exc:
        raise ValueError(f"Invalid Redis URL {redact_url(url)}: {exc}") from None


def unreachable_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean Redis could not be reached or did not answer in time."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, OSError)


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a Redis error, for logs and health details."""
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task has been asked to stop.

    redis-py's asyncio client (8.x, seen with hiredis) can lose a cancellation that arrives
    during a command: the command returns normally and the task, still `cancelling()`, runs
    on. A loop that calls Redis until it is cancelled would then never stop, and whoever
    waits for it (a plugin's shutdown) hangs. Call this after each command in such a loop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError

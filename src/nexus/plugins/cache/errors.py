"""Errors of the cache: a backend that cannot be reached, or that answered with an error."""

from __future__ import annotations

from nexus.errors import NexusError

_CHECK_SERVER = "Check plugins.cache.url and that the server is running"


class CacheError(NexusError, RuntimeError):
    """The cache backend failed to carry out an operation."""


class CacheUnavailableError(CacheError, ConnectionError):
    """The cache backend cannot be reached, or was closed; `url` has its password masked."""

    def __init__(self, url: str, reason: str, *, hint: str = _CHECK_SERVER) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"The cache at {url} is unavailable: {reason}. {hint}.")

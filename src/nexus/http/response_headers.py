"""Headers several middleware add to one response, written by a single `send` wrapper.

The request id middleware, outermost in the platform's stack, keeps the headers to add to each
response in the request's scope. Inner layers that only add headers (the rate limiter's, the
security headers) put theirs there rather than wrap `send` once more each: a request pays for
one wrapper, not one per layer. A layer used without the request id middleware around it finds
no such place and wraps `send` itself (`add_headers` returns False).
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Final

from nexus.http.types import RawHeaders, Scope

#: Scope keys: headers to append, and (headers, their names) to add unless the app set them.
APPENDED: Final = "nexus.response_headers"
DEFAULTS: Final = "nexus.default_response_headers"

_name_of = itemgetter(0)


def add_headers(scope: Scope, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Append `headers` to the response; False when nobody writes them (wrap `send` then)."""
    appended: RawHeaders | None = scope.get(APPENDED)
    if appended is None:
        return False
    appended.extend(headers)
    return True


def add_default_headers(scope: Scope, headers: RawHeaders, names: frozenset[bytes]) -> bool:
    """Add `headers` unless the app set them (`names`: theirs); False when nobody writes them."""
    if APPENDED not in scope or DEFAULTS in scope:
        return False
    scope[DEFAULTS] = (headers, names)
    return True


def merge_defaults(
    headers: Iterable[tuple[bytes, bytes]], extra: RawHeaders, names: frozenset[bytes]
) -> RawHeaders:
    """`headers` plus those of `extra` whose name (one of `names`) the app did not set."""
    if type(headers) is not list:
        headers = list(headers)  # any iterable: it is read twice below
    # ASGI header names are lower case. The usual case, none of ours set by the app, is
    # decided without a Python-level loop.
    if names.isdisjoint(map(_name_of, headers)):
        return [*headers, *extra]
    present = set(map(_name_of, headers))
    return [*headers, *(header for header in extra if header[0] not in present)]

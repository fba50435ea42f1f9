"""Who is asking: the authenticated user and the client address an ASGI scope carries."""

from __future__ import annotations

from collections.abc import Mapping

from nexus.http.types import Scope

_USER_ATTRIBUTES = ("id", "username", "name")


def identify_user(scope: Scope) -> str | None:
    """Return the id of ``scope["state"]["user"]`` as a string, or None when nobody signed in.

    An authentication layer that runs before this one puts the user there: a string, a
    mapping, or an object with an ``id`` (else ``username``, else ``name``).
    """
    state = scope.get("state")
    if not state:
        return None
    user = state.get("user")
    if user is None:
        return None
    if isinstance(user, str):
        return user
    # One type check per request, not one per attribute (an ABC check is not free).
    if type(user) is dict or (hasattr(user, "get") and isinstance(user, Mapping)):
        lookup = user.get
    else:
        lookup = None
    for attribute in _USER_ATTRIBUTES:
        value = lookup(attribute) if lookup is not None else getattr(user, attribute, None)
        if value is not None:
            return value if type(value) is str else str(value)
    return None


def get_client_host(scope: Scope) -> str | None:
    """Return the client's IP address (after trusted proxy headers were applied), if known."""
    client = scope.get("client")
    return client[0] if client else None

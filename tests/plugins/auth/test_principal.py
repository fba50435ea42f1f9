"""Principal.has: exact permissions, wildcards, the admin role, and API key scopes."""

from __future__ import annotations

import pytest

from nexus.plugins.auth import Principal, require


def test_user_permissions_and_wildcards() -> None:
    """A user holds listed permissions, `area:*` covers its area, `*` covers everything."""
    user = Principal("1", "ada", frozenset({"editor"}), frozenset({"notes:read", "audit:*"}))
    assert user.has("notes:read")
    assert not user.has("notes:write")
    assert user.has("audit:read") and user.has("audit:export")
    assert not user.has("auditor:read")
    assert Principal("2", "root", permissions=frozenset({"*"})).has("anything:at-all")
    assert user.missing(["notes:read", "notes:write", "plugins:manage"]) == [
        "notes:write",
        "plugins:manage",
    ]


def test_admin_role_holds_everything_but_not_through_an_api_key() -> None:
    """The admin role grants every permission to its user, never beyond an API key's scopes."""
    admin = Principal("1", "ada", frozenset({"admin"}))
    assert admin.is_admin and admin.has("plugins:manage")
    key = Principal(
        "1",
        "ada",
        frozenset({"admin"}),
        frozenset({"notes:read"}),
        scopes=frozenset({"notes:read"}),
        kind="api_key",
    )
    assert key.has("notes:read")
    assert not key.has("plugins:manage")
    assert not key.is_admin


def test_require_needs_permission_names() -> None:
    """require() without permissions is a programming error, caught when the route is defined."""
    with pytest.raises(ValueError, match="one or more permission names"):
        require()
    with pytest.raises(ValueError, match="one or more permission names"):
        require("notes:read", "")

"""Manifest permissions: topic and service grants with wildcards."""

from __future__ import annotations

import pytest

from nexus.errors import PermissionDeniedError
from nexus.kernel.permissions import Permissions, parse_permission
from nexus.kernel.topics import covers, matches


def test_topic_wildcards() -> None:
    """`*` matches one segment, `**` any number including none."""
    assert matches("user.*", "user.created") and not matches("user.*", "user.a.b")
    assert matches("user.**", "user") and matches("user.**", "user.a.b")
    assert (
        matches("a.**.z", "a.z") and matches("a.**.z", "a.b.c.z") and not matches("a.**.z", "a.b")
    )
    assert matches("user.created", "user.created") and not matches("user.created", "user.deleted")


def test_grant_covers_only_narrower_patterns() -> None:
    """A grant covers a subscription pattern only if every matched topic is granted."""
    assert covers("user.*", "user.created") and covers("user.*", "user.*")
    assert not covers("user.*", "user.**") and not covers("user.*", "**")
    assert covers("user.**", "user.*.x") and covers("**", "a.**")


def test_checks_name_the_missing_permission() -> None:
    """Denials say which permission to add to manifest.json."""
    perms = Permissions(
        "mailer", ["events:publish:email.*", "events:subscribe:user.**", "services:use:db.*"]
    )
    assert perms.can_publish("email.sent") and not perms.can_publish("user.created")
    assert perms.can_subscribe("user.created") and not perms.can_subscribe("**")
    assert perms.can_use_service("db.session") and not perms.can_use_service("cache")
    with pytest.raises(
        PermissionDeniedError, match=r"'mailer' lacks permission 'events:publish:user\.created'"
    ):
        perms.check_publish("user.created")
    with pytest.raises(PermissionDeniedError, match="services:use:cache"):
        perms.check_use_service("cache")


def test_unknown_permission_kind_is_rejected() -> None:
    """A permission of an unknown form lists the known forms."""
    with pytest.raises(ValueError, match=r"not one of the known forms: 'events:publish:user\.\*'"):
        parse_permission("files:write:/etc")
    with pytest.raises(ValueError, match="must be a dotted name"):
        parse_permission("events:publish:user..x")

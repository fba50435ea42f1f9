"""Plugin capabilities granted by the manifest, and the checks the kernel makes against them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from nexus.errors import EventError, PermissionDeniedError
from nexus.kernel.topics import covers, matches, validate_pattern

#: Every permission kind a manifest may grant, with an example of each.
PERMISSION_KINDS: Final = {
    "events:publish": "events:publish:user.*",
    "events:subscribe": "events:subscribe:email.**",
    "services:use": "services:use:database",
    "http:mount": "http:mount:admin",
}


def parse_permission(text: str) -> tuple[str, str]:
    """Split 'events:publish:user.*' into ('events:publish', 'user.*'), or raise ValueError."""
    kind, sep, target = text.rpartition(":")
    if not sep or kind not in PERMISSION_KINDS or not target:
        examples = ", ".join(repr(example) for example in PERMISSION_KINDS.values())
        raise ValueError(f"permission {text!r} is not one of the known forms: {examples}")
    try:
        validate_pattern(target)
    except EventError:
        raise ValueError(
            f"permission {text!r}: {target!r} must be a dotted name where '*' stands for one "
            f"segment and '**' for any number"
        ) from None
    return kind, target


class Permissions:
    """What one plugin may do; answers are cached because checks sit on the publish path."""

    __slots__ = ("_grants", "_publish_cache", "plugin")

    def __init__(self, plugin: str, granted: Iterable[str]) -> None:
        self.plugin: Final = plugin
        grants: dict[str, list[str]] = {kind: [] for kind in PERMISSION_KINDS}
        for text in granted:
            kind, target = parse_permission(text)
            grants[kind].append(target)
        self._grants = grants
        self._publish_cache: dict[str, bool] = {}

    def can_publish(self, topic: str) -> bool:
        """Whether the plugin may publish events of this concrete topic."""
        allowed = self._publish_cache.get(topic)
        if allowed is None:
            allowed = any(matches(grant, topic) for grant in self._grants["events:publish"])
            if len(self._publish_cache) < 4096:
                self._publish_cache[topic] = allowed
        return allowed

    def can_subscribe(self, pattern: str) -> bool:
        """Whether every topic the pattern matches is one the plugin may subscribe to."""
        return any(covers(grant, pattern) for grant in self._grants["events:subscribe"])

    def can_use_service(self, key: str) -> bool:
        """Whether the plugin may get the service with this key name."""
        return any(matches(grant, key) for grant in self._grants["services:use"])

    def can_mount(self, segment: str) -> bool:
        """Whether the plugin may serve routes at the root path /<segment>."""
        return segment in self._grants["http:mount"]

    def check_mount(self, segment: str) -> None:
        """Raise PermissionDeniedError unless the plugin may serve /<segment>."""
        if not self.can_mount(segment):
            raise PermissionDeniedError(self.plugin, f"http:mount:{segment}")

    def check_publish(self, topic: str) -> None:
        """Raise PermissionDeniedError unless the plugin may publish `topic`."""
        if not self.can_publish(topic):
            raise PermissionDeniedError(self.plugin, f"events:publish:{topic}")

    def check_subscribe(self, pattern: str) -> None:
        """Raise PermissionDeniedError unless the plugin may subscribe to `pattern`."""
        if not self.can_subscribe(pattern):
            raise PermissionDeniedError(self.plugin, f"events:subscribe:{pattern}")

    def check_use_service(self, key: str) -> None:
        """Raise PermissionDeniedError unless the plugin may use service `key`."""
        if not self.can_use_service(key):
            raise PermissionDeniedError(self.plugin, f"services:use:{key}")

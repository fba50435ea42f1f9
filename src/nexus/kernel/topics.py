"""Dotted topic names and the wildcard patterns that match them (`*` one segment, `**` any)."""

from __future__ import annotations

import re
from functools import lru_cache

from nexus.errors import EventError

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+\Z")


def validate_topic(topic: str) -> str:
    """Return `topic` if it is a concrete dotted name (no wildcards), else raise EventError."""
    if not isinstance(topic, str) or not topic:
        raise EventError(f"Event topic must be a non-empty dotted string, got {topic!r}.")
    for segment in topic.split("."):
        if not _SEGMENT.match(segment):
            raise EventError(
                f"Invalid event topic {topic!r}: segment {segment!r} must be letters, digits, "
                f"'_' or '-' (wildcards are only for subscriptions), e.g. 'user.created'."
            )
    return topic


def validate_pattern(pattern: str) -> str:
    """Return `pattern` if it is a valid subscription pattern, else raise EventError."""
    if not isinstance(pattern, str) or not pattern:
        raise EventError(f"Event pattern must be a non-empty dotted string, got {pattern!r}.")
    for segment in pattern.split("."):
        if segment not in ("*", "**") and not _SEGMENT.match(segment):
            raise EventError(
                f"Invalid event pattern {pattern!r}: segment {segment!r} must be a name, '*' "
                f"(one segment) or '**' (any number of segments), e.g. 'user.*' or 'user.**'."
            )
    return pattern


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str] | None:
    if "*" not in pattern:
        return None
    parts: list[str] = []
    for segment in pattern.split("."):
        if segment == "**":
            parts.append(r"(?:[^.]+(?:\.[^.]+)*)?")
        elif segment == "*":
            parts.append(r"[^.]+")
        else:
            parts.append(re.escape(segment))
    # `a.**` must also match `a`: let the dot before an empty `**` disappear.
    regex = ""
    for i, part in enumerate(parts):
        if i == 0:
            regex = part
        elif part.startswith("(?:[^.]+(?:"):
            regex += r"(?:\." + part[:-1] + ")?"
        else:
            regex += r"\." + part
    return re.compile(regex + r"\Z")


def matches(pattern: str, topic: str) -> bool:
    """Whether the subscription `pattern` matches the concrete `topic`."""
    compiled = _compile(pattern)
    if compiled is None:
        return pattern == topic
    return compiled.match(topic) is not None


def covers(grant: str, pattern: str) -> bool:
    """Whether every topic matched by `pattern` is also matched by `grant`."""
    return _covers(tuple(grant.split(".")), tuple(pattern.split(".")))


@lru_cache(maxsize=4096)
def _covers(grant: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    if not grant:
        return not pattern
    head, rest = grant[0], grant[1:]
    if head == "**":
        # `**` absorbs zero or more of the pattern's segments, whatever they are.
        return any(_covers(rest, pattern[i:]) for i in range(len(pattern) + 1))
    if not pattern:
        return False
    first = pattern[0]
    if first == "**":
        return False  # only a `**` in the grant can cover an unbounded run of segments
    if head == "*" or head == first:
        return _covers(rest, pattern[1:])
    return False

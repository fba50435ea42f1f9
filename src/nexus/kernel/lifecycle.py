"""Plugin lifecycle states and the transitions between them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from nexus.errors import PluginStateError


class PluginState(StrEnum):
    """Where a plugin is in its lifecycle."""

    DISCOVERED = "discovered"
    VALIDATED = "validated"
    RESOLVED = "resolved"
    LOADED = "loaded"
    INITIALIZED = "initialized"
    ACTIVE = "active"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    BLOCKED = "blocked"
    DISABLED = "disabled"


S = PluginState

#: The states a plugin may move to from each state. Anything else is a kernel bug.
TRANSITIONS: Final[dict[PluginState, frozenset[PluginState]]] = {
    S.DISCOVERED: frozenset({S.VALIDATED, S.FAILED}),
    S.VALIDATED: frozenset({S.RESOLVED, S.BLOCKED, S.DISABLED, S.FAILED}),
    S.RESOLVED: frozenset({S.LOADED, S.BLOCKED, S.DISABLED, S.FAILED, S.VALIDATED}),
    S.LOADED: frozenset({S.INITIALIZED, S.FAILED}),
    S.INITIALIZED: frozenset({S.ACTIVE, S.FAILED}),
    S.ACTIVE: frozenset({S.STOPPING}),
    S.STOPPING: frozenset({S.STOPPED}),
    S.STOPPED: frozenset({S.VALIDATED, S.RESOLVED, S.BLOCKED, S.DISABLED}),
    S.FAILED: frozenset({S.VALIDATED, S.DISABLED, S.DISCOVERED}),
    S.BLOCKED: frozenset({S.VALIDATED, S.RESOLVED, S.DISABLED, S.BLOCKED}),
    S.DISABLED: frozenset({S.VALIDATED, S.DISABLED}),
}

#: States in which a plugin holds no code, registrations or resources.
AT_REST: Final = frozenset(
    {S.DISCOVERED, S.VALIDATED, S.RESOLVED, S.STOPPED, S.FAILED, S.BLOCKED, S.DISABLED}
)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a plugin failed: the lifecycle stage, a one-line reason and the traceback text."""

    stage: str  # validate | resolve | import | config | setup | activate | task
    reason: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"failed at {self.stage}: {self.reason}"


def check_transition(plugin: str, current: PluginState, target: PluginState) -> None:
    """Raise PluginStateError unless `current -> target` is an allowed transition."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current]))
        raise PluginStateError(
            f"Plugin {plugin!r} cannot go from {current.value!r} to {target.value!r}; "
            f"from {current.value!r} it may go to: {allowed}."
        )

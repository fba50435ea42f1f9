"""The Transport protocol, and the memory transport for a single process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias

from nexus.errors import TransportError
from nexus.kernel._envelope import Event

__all__ = ["Deliver", "MemoryTransport", "Transport"]

Deliver: TypeAlias = Callable[[Event], Awaitable[None]]


class Transport(Protocol):
    """How published events reach subscribers: in memory here, Redis Streams in `nexus.redis`.

    A transport may also define `async def health(self) -> Health`, which the bus's `health()`
    (and so `/readyz`) reports.
    """

    async def start(self, deliver: Deliver) -> None:
        """Begin carrying events; call `deliver` with each event this process should handle."""

    async def publish(self, event: Event) -> None:
        """Carry `event` to every process that has matching subscribers."""

    async def close(self) -> None:
        """Stop carrying events and release connections."""


class MemoryTransport:
    """Hand each event straight to this process's subscribers (a single process)."""

    __slots__ = ("_deliver",)

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        """Deliver published events to `deliver`."""
        self._deliver = deliver

    async def publish(self, event: Event) -> None:
        """Deliver `event` now; returns once it is queued for every matching subscriber."""
        if self._deliver is None:
            raise TransportError(
                "The memory transport is not started: start the EventBus first "
                "(`await bus.start()` or `async with bus:`)."
            )
        await self._deliver(event)

    async def close(self) -> None:
        """Stop delivering."""
        self._deliver = None

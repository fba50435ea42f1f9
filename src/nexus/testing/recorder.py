"""EventRecorder: the events published on a kernel's bus, kept for assertions."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

from nexus.kernel.events import Event, EventBus
from nexus.kernel.kernel import Kernel
from nexus.kernel.topics import matches, validate_pattern

if TYPE_CHECKING:
    from nexus.kernel.events import Unsubscribe

#: The subscription owner recorders appear as in `bus.subscriptions()`.
OWNER: Final = "nexus.testing"


class HasKernel(Protocol):
    """Anything that runs a kernel, such as the app from `create_test_app`."""

    @property
    def kernel(self) -> Kernel:
        """The kernel it runs."""
        ...


class EventRecorder:
    """Records every event matching `patterns` (default: all) published on a kernel's bus.

    Events are kept in the order they were published (a priority event may come earlier).

    recorder = EventRecorder(app)            # or a Kernel, or an EventBus
    async with serve(app) as client:
        await client.post("/api/notes/notes", json={"text": "hi"})
        [event] = await recorder.wait_for("note.created")

    Create it before the kernel starts to see events published during startup, or inside a
    coroutine once it runs. Delivery is asynchronous: use `wait_for`, not `events`, to wait
    for an event published a moment ago.
    """

    def __init__(self, source: Kernel | EventBus | HasKernel, *patterns: str) -> None:
        bus = source if isinstance(source, EventBus) else _kernel_of(source).bus
        self._patterns = patterns or ("**",)
        for pattern in self._patterns:
            validate_pattern(pattern)
        self._events: list[Event] = []
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []
        # One subscription to everything keeps the events in publish order (one mailbox).
        # Broadcast: with a cluster transport each recorder still sees every event here.
        self._unsubscribe: Unsubscribe | None = bus.subscribe(
            "**", self._record, owner=OWNER, mode="broadcast"
        )

    @property
    def events(self) -> list[Event]:
        """The events recorded so far (since the last `clear`), in delivery order."""
        return list(self._events)

    def topics(self) -> list[str]:
        """The topics of the recorded events, in delivery order."""
        return [event.type for event in self._events]

    def matching(self, pattern: str) -> list[Event]:
        """The recorded events whose topic matches `pattern` (`*` one segment, `**` any)."""
        validate_pattern(pattern)
        return [event for event in self._events if matches(pattern, event.type)]

    def clear(self) -> None:
        """Forget the events recorded so far."""
        self._events.clear()

    async def wait_for(self, pattern: str, count: int = 1, *, timeout: float = 5.0) -> list[Event]:
        """Wait until `count` recorded events match `pattern`; returns every match so far.

        Raises AssertionError naming what was recorded if they do not arrive within `timeout`
        seconds.
        """
        __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count!r}.")
        found = self.matching(pattern)
        if len(found) >= count:
            return found
        waiter = asyncio.get_running_loop().create_future()
        entry = (pattern, count, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            seen = ", ".join(self.topics()) or "nothing"
            raise AssertionError(
                f"Expected {count} event(s) matching {pattern!r} within {timeout:g} s, "
                f"got {len(self.matching(pattern))}. Recorded: {seen}."
            ) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
        return self.matching(pattern)

    def close(self) -> None:
        """Stop recording (the events recorded so far stay readable)."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    async def __aenter__(self) -> EventRecorder:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def _record(self, event: Event) -> None:
        if not any(matches(pattern, event.type) for pattern in self._patterns):
            return
        self._events.append(event)
        for pattern, count, waiter in self._waiters:
            if not waiter.done() and len(self.matching(pattern)) >= count:
                waiter.set_result(None)

    def __repr__(self) -> str:
        return f"EventRecorder({', '.join(map(repr, self._patterns))}: {len(self._events)} events)"


def _kernel_of(source: Any) -> Kernel:
    if isinstance(source, Kernel):
        return source
    kernel = getattr(source, "kernel", None)
    if not isinstance(kernel, Kernel):
        raise TypeError(
            f"EventRecorder records from a Kernel, an EventBus or an app with a `kernel` "
            f"(create_test_app), got {type(source).__name__}."
        )
    return kernel

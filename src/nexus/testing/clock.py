"""FakeClock: time that moves only when a test says so.

Nothing is patched globally. A plugin that must be tested against time takes its clock as a
parameter whose default is the real one, and a test passes the FakeClock's method instead:

    class Sessions(Plugin):
        def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
            self.monotonic = monotonic

    clock = FakeClock()
    kernel = create_test_kernel(
        plugins=[inline_plugin(MANIFEST, lambda: Sessions(monotonic=clock.monotonic))]
    )
    clock.advance(3600)  # the sessions made so far are an hour old now

The methods mirror the real calls: `now()` ~ `datetime.now(UTC)`, `time()` ~ `time.time()`,
`monotonic()` ~ `time.monotonic()`, `sleep()` ~ `asyncio.sleep()`; a plugin may also take the
whole clock as one object with those methods.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
from typing import Final

#: Where a FakeClock's wall clock starts unless told otherwise.
DEFAULT_START: Final = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


class FakeClock:
    """A controllable clock: `advance(seconds)` moves it and wakes the sleepers that are due.

    `advance` jumps: a task sleeping in a loop runs once per advance past its deadline, then
    sleeps again from the new time. Advance in steps to see it run several times.
    """

    def __init__(self, start: dt.datetime = DEFAULT_START, *, monotonic: float = 0.0) -> None:
        if start.tzinfo is None:
            raise ValueError(f"start must be an aware datetime (tzinfo=UTC), got {start!r}.")
        self._wall = start.timestamp()
        self._monotonic = monotonic
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sleepers_changed: asyncio.Event | None = None

    def now(self) -> dt.datetime:
        """The current time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self._wall, dt.UTC)

    def time(self) -> float:
        """Seconds since the epoch, like `time.time()`."""
        return self._wall

    def monotonic(self) -> float:
        """A clock that never goes back, like `time.monotonic()`."""
        return self._monotonic

    def advance(self, seconds: float | dt.timedelta) -> None:
        """Move time forward and wake every sleeper whose deadline has come, earliest first."""
        step = seconds.total_seconds() if isinstance(seconds, dt.timedelta) else float(seconds)
        if not step >= 0:
            raise ValueError(f"A clock only moves forward; got advance({seconds!r}).")
        self._wall += step
        self._monotonic += step
        while self._sleepers and self._sleepers[0][0] <= self._monotonic:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has been advanced by `seconds` (at once if it is 0 or less)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._monotonic + seconds, next(self._order), waiter))
        if self._sleepers_changed is not None:
            self._sleepers_changed.set()
        try:
            await waiter
        finally:
            if not waiter.done():  # cancelled: stop counting it as a sleeper
                waiter.cancel()

    @property
    def sleepers(self) -> int:
        """How many `sleep` calls are waiting for the clock to move."""
        return sum(1 for _, _, waiter in self._sleepers if not waiter.done())

    async def wait_for_sleepers(self, count: int = 1, *, timeout: float = 5.0) -> None:
        """Wait (in real time) until `count` tasks sleep on this clock, before advancing it.

        Advancing before a background task reached its `sleep` would move time under it
        unnoticed. Raises AssertionError if fewer than `count` sleep within `timeout` seconds.
        """
        __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
        try:
            async with asyncio.timeout(timeout):
                while self.sleepers < count:
                    self._sleepers_changed = changed = asyncio.Event()
                    await changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"Expected {count} task(s) sleeping on the FakeClock within {timeout:g} s, "
                f"found {self.sleepers}."
            ) from None
        finally:
            self._sleepers_changed = None

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()}, monotonic={self._monotonic:g})"

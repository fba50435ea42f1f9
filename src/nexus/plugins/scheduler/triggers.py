"""When a job is due: on a fixed interval aligned to the epoch, or on a cron expression.

Times are integer milliseconds since the epoch (UTC). Every instance computes the same due
times from its own clock, so the due time names a run: the run lock of `every(60, ...)` due
at 12:01:00 is the same key on every instance.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Protocol

from nexus.plugins.scheduler.cron import CronExpression


class Trigger(Protocol):
    """Computes a job's due times."""

    def next_due(self, after_ms: int) -> int:
        """The first due time strictly after `after_ms`."""
        ...

    def describe(self) -> str:
        """How people read it: "every 60 s", "cron */5 * * * *"."""
        ...


class Interval:
    """Due at every multiple of `seconds` since the epoch: 12:00:00, 12:01:00, ... for 60."""

    __slots__ = ("period_ms", "seconds")

    def __init__(self, seconds: float | dt.timedelta) -> None:
        value = seconds.total_seconds() if isinstance(seconds, dt.timedelta) else seconds
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"every() needs seconds as a number or timedelta, got {seconds!r}.")
        if not math.isfinite(value) or round(value * 1000) < 1:
            raise ValueError(
                f"every() needs an interval of at least 0.001 seconds, got {seconds!r}."
            )
        self.seconds = value
        self.period_ms = round(value * 1000)

    def next_due(self, after_ms: int) -> int:
        """The next multiple of the period after `after_ms`."""
        return (after_ms // self.period_ms + 1) * self.period_ms

    def describe(self) -> str:
        """ "every 60 s"."""
        return f"every {self.seconds:g} s"


class Cron:
    """Due at the minutes a cron expression names (UTC)."""

    __slots__ = ("expression",)

    def __init__(self, expression: str) -> None:
        self.expression = CronExpression.parse(expression)

    def next_due(self, after_ms: int) -> int:
        """The first matching minute after `after_ms`."""
        moment = dt.datetime.fromtimestamp(after_ms / 1000, dt.UTC)
        return int(self.expression.next_after(moment).timestamp()) * 1000

    def describe(self) -> str:
        """ "cron */5 * * * *"."""
        return f"cron {self.expression}"

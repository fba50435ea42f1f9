"""Numbers for the dashboard's charts: requests/s, p95 latency and errors per plugin, event rates.

A request observer tallies each request into the current one-second window
(a counter and a bounded latency sample per plugin); once a second `MetricsSampler` closes
the window, reads the event bus counters through the platform, and keeps the result in a
ring. Everything is per process: with several workers each shows its own share.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from nexus.http.types import Scope

if TYPE_CHECKING:
    from nexus.kernel.platform import Platform

#: Requests served by the platform itself (/livez, /readyz, unknown paths).
PLATFORM_LABEL: Final = "platform"
#: Latencies kept per plugin per second for the p95 (a uniform sample beyond that).
_SAMPLE_SIZE: Final = 512
_EVENT_COUNTERS: Final = ("published", "delivered", "failed", "dead_lettered")


class _Tally:
    __slots__ = ("count", "errors", "latencies")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.latencies: list[float] = []


class RequestStats:
    """Requests of the current window, by plugin."""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._window: dict[str, _Tally] = {}
        self._random = (rng or random.Random()).random

    def observe(self, plugin: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.record(plugin, None, status, seconds, False)

    def record(
        self, plugin: str | None, scope: Scope | None, status: int, seconds: float, streamed: bool
    ) -> None:
        """A request observer (`ctx.http.observe_requests`); event streams are not counted."""
        if streamed:  # an event stream's "latency" is how long someone watched it
            return
        if plugin is None:
            plugin = PLATFORM_LABEL
        tally = self._window.get(plugin)
        if tally is None:
            tally = self._window[plugin] = _Tally()
        tally.count += 1
        if status >= 500:
            tally.errors += 1
        latencies = tally.latencies
        if len(latencies) < _SAMPLE_SIZE:
            latencies.append(seconds)
        else:  # reservoir sampling keeps a uniform sample of the window
            slot = int(self._random() * tally.count)
            if slot < _SAMPLE_SIZE:
                latencies[slot] = seconds

    def take(self) -> dict[str, _Tally]:
        """Close the window: return its tallies and start a new one."""
        window, self._window = self._window, {}
        return window


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (not empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Sample:
    """One second of numbers."""

    time: float
    requests: dict[str, float]  # requests per second, by plugin
    errors: dict[str, float]  # 5xx responses per second, by plugin
    p95_ms: dict[str, float]  # by plugin, only those that served requests
    total_p95_ms: float | None
    events: dict[str, float] = field(default_factory=dict)  # per second, by counter


class MetricsSampler:
    """Takes a Sample every `interval` seconds and keeps the latest `window` of them."""

    def __init__(
        self,
        stats: RequestStats,
        platform: Platform,
        *,
        window: int = 300,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stats, self.platform = stats, platform
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=window)
        self._clock = clock
        self._last_time = clock()
        self._last_events = self._event_totals()
        stats.take()  # start the first window now

    def _event_totals(self) -> dict[str, int]:
        totals = dict.fromkeys(_EVENT_COUNTERS, 0)
        for counters in self.platform.event_stats().values():
            for name in _EVENT_COUNTERS:
                totals[name] += counters[name]
        return totals

    def sample(self) -> Sample:
        """Close the current window and record it."""
        now = self._clock()
        elapsed = max(now - self._last_time, 1e-6)
        self._last_time = now
        window = self.stats.take()
        events = self._event_totals()
        event_rates = {
            name: max(events[name] - self._last_events.get(name, 0), 0) / elapsed
            for name in _EVENT_COUNTERS
        }
        self._last_events = events
        every: list[float] = []
        p95: dict[str, float] = {}
        for plugin, tally in window.items():
            if tally.latencies:
                p95[plugin] = round(percentile(tally.latencies, 0.95) * 1000, 3)
                every.extend(tally.latencies)
        sample = Sample(
            time=now,
            requests={plugin: t.count / elapsed for plugin, t in window.items()},
            errors={plugin: t.errors / elapsed for plugin, t in window.items() if t.errors},
            p95_ms=p95,
            total_p95_ms=round(percentile(every, 0.95) * 1000, 3) if every else None,
            events=event_rates,
        )
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        """Sample every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    def series(self, seconds: int | None = None) -> dict[str, Any]:
        """The kept samples as columns for charts (the latest `seconds` of them)."""
        samples = list(self.samples)
        if seconds is not None:
            samples = samples[-seconds:] if seconds > 0 else []
        plugins = sorted({p for s in samples for p in s.requests})
        requests: dict[str, list[float]] = {"total": []}
        errors: dict[str, list[float]] = {"total": []}
        p95: dict[str, list[float | None]] = {"total": []}
        error_rate: list[float | None] = []
        for plugin in plugins:
            requests[plugin], errors[plugin], p95[plugin] = [], [], []
        for s in samples:
            total = sum(s.requests.values())
            failed = sum(s.errors.values())
            requests["total"].append(round(total, 3))
            errors["total"].append(round(failed, 3))
            p95["total"].append(s.total_p95_ms)
            error_rate.append(round(failed / total, 4) if total else None)
            for plugin in plugins:
                requests[plugin].append(round(s.requests.get(plugin, 0.0), 3))
                errors[plugin].append(round(s.errors.get(plugin, 0.0), 3))
                p95[plugin].append(s.p95_ms.get(plugin))
        return {
            "interval": self.interval,
            "time": [round(s.time, 3) for s in samples],
            "plugins": plugins,
            "requests_per_second": requests,
            "errors_per_second": errors,
            "p95_ms": p95,
            "error_rate": error_rate,
            "events_per_second": {
                name: [round(s.events.get(name, 0.0), 3) for s in samples]
                for name in _EVENT_COUNTERS
            },
        }

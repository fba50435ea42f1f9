"""Platform metrics read from the kernel when scraped: plugin states, boot times, event counters.

Nothing here runs per event or per state change: the kernel already keeps these numbers, and a
scrape turns them into samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Final, cast

from nexus.kernel.lifecycle import PluginState
from nexus.plugins.monitoring._prometheus import (
    CounterMetricFamily,
    GaugeMetricFamily,
    prometheus_client,
)

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge
    from prometheus_client.metrics_core import Metric

    from nexus.kernel.platform import Platform


#: The event counters exported per topic, named as in `Platform.event_stats()`.
EVENT_OUTCOMES: Final = (
    "published",
    "delivered",
    "failed",
    "timed_out",
    "dead_lettered",
    "dropped",
)

_EVENTS_HELP: Final = "Events per topic and outcome (failed counts attempts, retries included)."
_DEAD_LETTERS_HELP: Final = "Events whose handlers gave up after every retry, held for redelivery."


class PlatformCollector:
    """A prometheus_client collector reading the Platform service at scrape time.

    With `events=False` (multiprocess mode) the event metrics are left to `EventSync`, which
    writes them where every worker's scrape can add them up.
    """

    def __init__(self, platform: Platform, *, events: bool = True) -> None:
        self._platform = platform
        self._events = events

    def collect(self) -> Iterator[Metric]:
        """Yield the current samples."""
        platform = self._platform
        info = GaugeMetricFamily(
            "nexus_build_info", "The running Nexus version (always 1).", labels=["version"]
        )
        info.add_metric([platform.version], 1.0)
        yield info
        states = GaugeMetricFamily(
            "nexus_plugin_state",
            "1 for the lifecycle state each plugin is in, 0 for the others.",
            labels=["plugin", "state"],
        )
        boot = GaugeMetricFamily(
            "nexus_plugin_boot_seconds",
            "How long the plugin's last start (load, setup, activation) took.",
            labels=["plugin"],
        )
        for status in platform.statuses():
            for state in PluginState:
                states.add_metric([status.name, state.value], float(status.state is state))
            if status.boot_seconds is not None:
                boot.add_metric([status.name], status.boot_seconds)
        yield states
        yield boot
        if self._events:
            events = CounterMetricFamily("nexus_events", _EVENTS_HELP, labels=["topic", "outcome"])
            for topic, stats in sorted(_event_counts(platform).items()):
                for outcome in EVENT_OUTCOMES:
                    events.add_metric([topic, outcome], float(stats[outcome]))
            yield events
            yield GaugeMetricFamily(
                "nexus_event_dead_letters", _DEAD_LETTERS_HELP, value=len(platform.dead_letters)
            )


class EventSync:
    """Copy this process's event counters into multiprocess metric files.

    Every worker has its own event bus. Writing each worker's totals as counter increments
    (the difference since the last copy) lets the multiprocess collector sum them, so /metrics
    answered by any worker shows the whole server. Safe across plugin restarts: the amount
    already copied is read back from this process's file.
    """

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self.events: Counter = prometheus_client.Counter(
            "nexus_events", _EVENTS_HELP, ["topic", "outcome"], registry=None
        )
        self.dead_letters: Gauge = prometheus_client.Gauge(
            "nexus_event_dead_letters",
            _DEAD_LETTERS_HELP,
            registry=None,
            multiprocess_mode="livesum",
        )

    def sync(self) -> None:
        """Bring this process's share of the totals up to date."""
        stats = _event_counts(self._platform)
        for topic in stats:
            for outcome in EVENT_OUTCOMES:
                self.events.labels(topic, outcome)  # creates the child, reading its stored value
        copied: dict[tuple[str, str], float] = {}
        for metric in self.events.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    copied[sample.labels["topic"], sample.labels["outcome"]] = sample.value
        for topic, counts in stats.items():
            for outcome in EVENT_OUTCOMES:
                delta = counts[outcome] - copied.get((topic, outcome), 0.0)
                if delta > 0:
                    self.events.labels(topic, outcome).inc(delta)
        self.dead_letters.set(len(self._platform.dead_letters))


def _event_counts(platform: Platform) -> dict[str, Mapping[str, int]]:
    """Event counters per topic, keyed by outcome name."""
    return cast("dict[str, Mapping[str, int]]", platform.event_stats())

"""Request metrics: a count and a duration per plugin, route template, method and status.

This runs on every request (as a request observer: the platform measures the status and the
time once for every observer), so the label work is done once per (route, app, method) and
cached. In one process, `RequestTally` counts in plain Python numbers that a scrape turns into
samples; with several workers, `RequestMetrics` writes through prometheus_client's metric
children, whose multiprocess values are files every worker's scrape adds up.

Labels are bounded by what the application serves, never by what clients send: the route is the
matched template (`/api/notes/notes/{note_id}`), unknown methods count as "OTHER", unmatched
paths are "unmatched" and requests no plugin served are "platform".
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from nexus.http.types import Scope
from nexus.plugins.monitoring._prometheus import CounterMetricFamily, prometheus_client

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram
    from prometheus_client.metrics_core import Metric

try:  # Newer FastAPI keeps included routes in their router, with the full path in a context.
    from fastapi.routing import iter_route_contexts as _iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI copies routes with their full path
    _iter_route_contexts = None  # type: ignore[assignment]

UNMATCHED: Final = "unmatched"
PLATFORM_LABEL: Final = "platform"
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUESTS: Final = "nexus_http_requests"
REQUESTS_HELP: Final = "HTTP requests answered, by plugin, route template, method and status."
DURATION: Final = "nexus_http_request_duration_seconds"
DURATION_HELP: Final = "Time from the request reaching the application to its response's end."
#: Past this many cached label sets the cache starts over (the counts stay).
_MAX_CACHED: Final = 10_000

# A route object included under several prefixes of one app: (template, compiled path regex).
_Candidates = list[tuple[str, re.Pattern[str] | None]]
Labels = tuple[str, str, str]  # plugin, route template, method


class _RouteLabels:
    """(plugin, route template, method) of requests, found once per route, app and method."""

    def __init__(self, exclude: str | None) -> None:
        self._exclude = exclude  # the plugin whose requests are not counted (/metrics itself)
        self._routes: dict[Any, dict[int, _Candidates]] = {}  # app -> id(route) -> templates

    def forget_routes(self) -> None:
        """Drop cached labels, e.g. after a plugin reload replaced its app and routes."""
        self._routes.clear()

    def labels(self, plugin: str | None, scope: Scope) -> tuple[Labels, bool]:
        """The request's labels, and whether they hold for every request to its route."""
        route, app = scope.get("route"), scope.get("app")
        method = scope["method"]
        if method not in METHODS:
            method = "OTHER"
        name = plugin or PLATFORM_LABEL
        if route is None:
            return (name, UNMATCHED, method), True
        candidates = self._candidates(app).get(id(route))
        if not candidates:
            return (name, _own_template(route), method), True
        if len(candidates) == 1:
            return (name, candidates[0][0], method), True
        # The route is served under several prefixes: label this request alone.
        path = scope.get("path", "")
        for template, regex in candidates:
            if regex is not None and regex.match(path):
                return (name, template, method), False
        return (name, candidates[0][0], method), False

    def _candidates(self, app: Any) -> dict[int, _Candidates]:
        known = self._routes.get(app)
        if known is None:
            known = self._routes[app] = _route_templates(getattr(app, "routes", ()))
        return known


class _Series:
    """One label set's numbers: requests by status, and a histogram of durations."""

    __slots__ = ("buckets", "labels", "statuses", "total")

    def __init__(self, labels: Labels, size: int) -> None:
        self.labels = labels
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * size  # per bucket, not cumulative; the last is +Inf
        self.total = 0.0


class RequestTally(_RouteLabels):
    """Request metrics of one process, counted in plain numbers; a prometheus collector.

    A request costs a dict lookup, a `bisect` and three additions; the samples are built when
    /metrics is scraped.
    """

    def __init__(self, buckets: Sequence[float], *, exclude: str | None = None) -> None:
        super().__init__(exclude)
        self._bounds = tuple(float(bound) for bound in buckets)
        go_string = cast(Callable[[float], str], prometheus_client.utils.floatToGoString)
        self._les = [go_string(bound) for bound in self._bounds]  # as Histogram writes `le`
        self._series: dict[Labels, _Series] = {}
        # (id(route), app, method) -> series; the app in the key holds its routes alive, so a
        # route's id cannot be reused while cached.
        self._cache: dict[tuple[Any, ...], _Series] = {}

    def observe(
        self, plugin: str | None, scope: Scope, status: int, seconds: float, streamed: bool = False
    ) -> None:
        """Count one answered request and its duration (a request observer)."""
        if plugin is not None and plugin == self._exclude:
            return
        key = (id(scope.get("route")), scope.get("app"), scope["method"])
        series = self._cache.get(key)
        if series is None:
            series = self._series_for(plugin, scope, key)
        series.buckets[bisect_left(self._bounds, seconds)] += 1
        series.total += seconds
        statuses = series.statuses
        statuses[status] = statuses.get(status, 0) + 1

    def _series_for(self, plugin: str | None, scope: Scope, key: tuple[Any, ...]) -> _Series:
        labels, is_stable = self.labels(plugin, scope)
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = _Series(labels, len(self._bounds) + 1)
        if is_stable:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = series
        return series

    def forget_routes(self) -> None:
        """Drop cached labels (the counts stay), e.g. after a plugin reload."""
        super().forget_routes()
        self._cache.clear()

    def collect(self) -> Iterator[Metric]:
        """The two metrics, as prometheus_client's registry asks a collector for them."""
        requests = CounterMetricFamily(
            REQUESTS, REQUESTS_HELP, labels=["plugin", "route", "method", "status"]
        )
        durations = prometheus_client.core.HistogramMetricFamily(
            DURATION, DURATION_HELP, labels=["plugin", "route", "method"]
        )
        for labels, series in list(self._series.items()):
            for status, count in sorted(series.statuses.items()):
                requests.add_metric([*labels, str(status)], count)
            cumulative, buckets = 0, []
            for le, count in zip([*self._les, "+Inf"], series.buckets, strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            durations.add_metric(list(labels), buckets, series.total)
        yield requests
        yield durations


class RequestMetrics(_RouteLabels):
    """The same metrics through prometheus_client's children: for multiprocess mode."""

    def __init__(
        self, requests: Counter, seconds: Histogram, *, exclude: str | None = None
    ) -> None:
        super().__init__(exclude)
        self.requests: Final = requests
        self.seconds: Final = seconds
        # (id(route), app, method) -> histogram child; + status -> counter child.
        self._histograms: dict[tuple[Any, ...], Any] = {}
        self._counters: dict[tuple[Any, ...], Any] = {}

    @classmethod
    def create(cls, *, buckets: Sequence[float], exclude: str | None = None) -> RequestMetrics:
        """Make both metrics; in multiprocess mode their values live in the shared files."""
        requests = prometheus_client.Counter(
            REQUESTS, REQUESTS_HELP, ["plugin", "route", "method", "status"], registry=None
        )
        seconds = prometheus_client.Histogram(
            DURATION,
            DURATION_HELP,
            ["plugin", "route", "method"],
            buckets=tuple(buckets),
            registry=None,
        )
        return cls(requests, seconds, exclude=exclude)

    def observe(
        self, plugin: str | None, scope: Scope, status: int, seconds: float, streamed: bool = False
    ) -> None:
        """Count one answered request and its duration (a request observer)."""
        if plugin is not None and plugin == self._exclude:
            return
        key = (id(scope.get("route")), scope.get("app"), scope["method"])
        histogram = self._histograms.get(key)
        if histogram is None:
            labels, is_stable = self.labels(plugin, scope)
            histogram = self.seconds.labels(*labels)
            if not is_stable:
                histogram.observe(seconds)
                self.requests.labels(*labels, str(status)).inc()
                return
            if len(self._histograms) >= _MAX_CACHED:
                self.forget_routes()
            self._histograms[key] = histogram
        histogram.observe(seconds)
        counter_key = (*key, status)
        counter = self._counters.get(counter_key)
        if counter is None:
            labels, _ = self.labels(plugin, scope)
            counter = self._counters[counter_key] = self.requests.labels(*labels, str(status))
        counter.inc()

    def forget_routes(self) -> None:
        """Drop cached labels and children (the values stay), e.g. after a plugin reload."""
        super().forget_routes()
        self._histograms.clear()
        self._counters.clear()


def _own_template(route: Any) -> str:
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


def _route_templates(routes: Iterable[Any]) -> dict[int, _Candidates]:
    """Map each route object of an app to its full path template(s)."""
    found: dict[int, _Candidates] = {}
    if _iter_route_contexts is None:  # pragma: no cover - older FastAPI
        return found
    for context in _iter_route_contexts(list(routes)):
        template = context.path_format or context.path
        if not template:
            continue
        regex = getattr(context, "path_regex", None)
        found.setdefault(id(context.original_route), []).append((template, regex))
    return found

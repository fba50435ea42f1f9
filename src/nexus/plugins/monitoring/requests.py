"""Request metrics: a count and a duration per plugin, route template, method and status.

This sits on every request, so the label work is done once per (route, method, status) and the
prometheus_client children are cached: a request costs two dict lookups, an `observe` and an
`inc`. Labels are bounded by what the application serves, never by what clients send: the route
is the matched template (`/api/notes/notes/{note_id}`), unknown methods count as "OTHER", and
unmatched paths are "unmatched".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from nexus.http.types import ASGIApp, Message, Receive, Scope, Send
from nexus.plugins.monitoring._prometheus import prometheus_client

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

try:  # Newer FastAPI keeps included routes in their router, with the full path in a context.
    from fastapi.routing import iter_route_contexts as _iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI copies routes with their full path
    _iter_route_contexts = None  # type: ignore[assignment]

UNMATCHED: Final = "unmatched"
PLATFORM_LABEL: Final = "platform"
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Past this many cached label sets the caches start over (children stay in the metrics).
_MAX_CACHED: Final = 10_000

# A route object included under several prefixes of one app: (template, compiled path regex).
_Candidates = list[tuple[str, re.Pattern[str] | None]]


class RequestMetrics:
    """`nexus_http_requests_total` and `nexus_http_request_duration_seconds`, labelled cheaply."""

    __slots__ = ("_counters", "_histograms", "_routes", "requests", "seconds")

    def __init__(self, requests: Counter, seconds: Histogram) -> None:
        self.requests: Final = requests
        self.seconds: Final = seconds
        # (id(route), app, method) -> histogram child; + status -> counter child. The app in
        # the key holds its routes alive, so a route's id cannot be reused while cached.
        self._histograms: dict[tuple[Any, ...], Any] = {}
        self._counters: dict[tuple[Any, ...], Any] = {}
        self._routes: dict[Any, dict[int, _Candidates]] = {}  # app -> id(route) -> templates

    @classmethod
    def create(
        cls, *, registry: CollectorRegistry | None, buckets: Sequence[float]
    ) -> RequestMetrics:
        """Make both metrics in `registry` (None in multiprocess mode, where files hold them)."""
        requests = prometheus_client.Counter(
            "nexus_http_requests",
            "HTTP requests answered, by plugin, route template, method and status.",
            ["plugin", "route", "method", "status"],
            registry=registry,
        )
        seconds = prometheus_client.Histogram(
            "nexus_http_request_duration_seconds",
            "Time from the request reaching the application to its response's end.",
            ["plugin", "route", "method"],
            buckets=tuple(buckets),
            registry=registry,
        )
        return cls(requests, seconds)

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        route = scope.get("route")
        app = scope.get("app")
        method = scope["method"]
        if method not in METHODS:
            method = "OTHER"
        key = (id(route), app, method)
        histogram = self._histograms.get(key)
        if histogram is None:
            plugin, template, is_stable = self._labels(route, app, scope)
            histogram = self.seconds.labels(plugin, template, method)
            if not is_stable:
                # The route is served under several prefixes: label this request alone.
                histogram.observe(seconds)
                self.requests.labels(plugin, template, method, str(status)).inc()
                return
            if len(self._histograms) >= _MAX_CACHED:
                self.forget_routes()
            self._histograms[key] = histogram
        histogram.observe(seconds)
        counter_key = (*key, status)
        counter = self._counters.get(counter_key)
        if counter is None:
            plugin, template, _ = self._labels(route, app, scope)
            counter = self._counters[counter_key] = self.requests.labels(
                plugin, template, method, str(status)
            )
        counter.inc()

    def forget_routes(self) -> None:
        """Drop cached labels, e.g. after a plugin reload replaced its app and routes."""
        self._histograms.clear()
        self._counters.clear()
        self._routes.clear()

    def _labels(self, route: Any, app: Any, scope: Scope) -> tuple[str, str, bool]:
        """(plugin, route template, whether the pair holds for every request to this route)."""
        context = getattr(getattr(app, "state", None), "nexus_context", None)
        plugin = context.name if context is not None else PLATFORM_LABEL
        if route is None:
            return plugin, UNMATCHED, True
        candidates = self._candidates(app).get(id(route))
        if not candidates:
            return plugin, _own_template(route), True
        if len(candidates) == 1:
            return plugin, candidates[0][0], True
        path = scope.get("path", "")
        for template, regex in candidates:
            if regex is not None and regex.match(path):
                return plugin, template, False
        return plugin, candidates[0][0], False

    def _candidates(self, app: Any) -> dict[int, _Candidates]:
        known = self._routes.get(app)
        if known is None:
            known = self._routes[app] = _route_templates(getattr(app, "routes", ()))
        return known


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


class MetricsMiddleware:
    """Pure ASGI middleware recording every HTTP request in a RequestMetrics.

    Paths under `exclude` (the metrics endpoint itself) are not recorded.
    """

    __slots__ = ("_exclude", "_prefixes", "app", "metrics")

    def __init__(
        self, app: ASGIApp, *, metrics: RequestMetrics, exclude: Sequence[str] = ("/metrics",)
    ) -> None:
        self.app = app
        self.metrics = metrics
        self._exclude = frozenset(exclude)
        self._prefixes = tuple(f"{path}/" for path in exclude)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in self._exclude or path.startswith(self._prefixes):
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app fails before starting a response

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = perf_counter()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.observe(scope, status, perf_counter() - start)

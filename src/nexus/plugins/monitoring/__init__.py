"""Prometheus metrics at /metrics: HTTP requests per plugin and route, plugin states, events.

Needs the `monitoring` extra (`pip install 'nexus-platform[monitoring]'`). Series:

- `nexus_http_requests_total{plugin,route,method,status}` and
  `nexus_http_request_duration_seconds{plugin,route,method}`: `route` is the matched template
  (`/api/notes/notes/{note_id}`) or "unmatched"; `plugin` the plugin that served the request or
  "platform". Recorded by a request observer (`ctx.http.observe_requests`), so requests
  refused earlier (rate limit, body size) and /metrics itself are not counted.
- `nexus_plugin_state{plugin,state}` (1 for the current state), `nexus_plugin_boot_seconds`,
  `nexus_events_total{topic,outcome}`, `nexus_event_dead_letters`, `nexus_build_info{version}`.

Several worker processes (`nexus run --workers N`): every worker writes its numbers to files in
a shared directory (prometheus_client's multiprocess mode), so /metrics answered by any worker
shows the totals. The plugin turns this on by itself when `server.workers > 1`, in
`<data_dir>/metrics`; under another process manager (gunicorn, ...) set
`PROMETHEUS_MULTIPROC_DIR` or `plugins.monitoring.multiprocess_dir`, and `server.workers` to
the number of workers. Plugin states are then those of the worker that answered.
"""

from __future__ import annotations

from nexus.plugins.monitoring.plugin import CONTENT_TYPE, MonitoringPlugin, MonitoringSettings
from nexus.plugins.monitoring.requests import RequestMetrics, RequestTally

__all__ = [
    "CONTENT_TYPE",
    "MonitoringPlugin",
    "MonitoringSettings",
    "RequestMetrics",
    "RequestTally",
]

"""Prometheus metrics at /metrics: HTTP requests per plugin and route, plugin states, events.

Needs the `monitoring` extra (`pip install 'nexus-platform[monitoring]'`).
"""

from __future__ import annotations

from nexus.plugins.monitoring.plugin import CONTENT_TYPE, MonitoringPlugin, MonitoringSettings
from nexus.plugins.monitoring.requests import MetricsMiddleware, RequestMetrics

__all__ = [
    "CONTENT_TYPE",
    "MetricsMiddleware",
    "MonitoringPlugin",
    "MonitoringSettings",
    "RequestMetrics",
]

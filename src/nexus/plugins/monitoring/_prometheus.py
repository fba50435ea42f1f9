"""prometheus_client, or an ImportError that names the extra to install."""

from __future__ import annotations

try:
    import prometheus_client
    import prometheus_client.core
    import prometheus_client.multiprocess
    import prometheus_client.values
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError as exc:  # pragma: no cover - the test environment has the extra installed
    raise ImportError(
        "The monitoring plugin needs prometheus-client: pip install 'nexus-platform[monitoring]', "
        "or disable it with `plugins.monitoring.enabled: false`."
    ) from exc

__all__ = ["CounterMetricFamily", "GaugeMetricFamily", "prometheus_client"]

"""The correlation id of the work in progress (an HTTP request id, or the event being handled)."""

from __future__ import annotations

from contextvars import ContextVar

correlation_id: ContextVar[str | None] = ContextVar("nexus_correlation_id", default=None)

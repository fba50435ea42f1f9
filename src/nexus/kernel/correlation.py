"""Who and what the work in progress belongs to: request id and acting user.

The HTTP layer sets both per request; the event bus stamps the correlation id on events, and
the kernel names the actor in the lifecycle events it publishes.
"""

from __future__ import annotations

from contextvars import ContextVar

correlation_id: ContextVar[str | None] = ContextVar("nexus_correlation_id", default=None)
actor: ContextVar[str | None] = ContextVar("nexus_actor", default=None)

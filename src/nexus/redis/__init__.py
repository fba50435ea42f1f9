"""Redis for Nexus instances that share state: the event bus, rate-limit buckets, clients.

`RedisTransport` carries the event bus between processes on Redis Streams; choose it with
`events.transport: redis` and `events.redis_url` in nexus.yaml (plugins do not change).

Every module imports `redis` (the `redis` extra: `pip install 'nexus-platform[redis]'`) only
when it opens a client, so importing this package costs nothing without it.
"""

from __future__ import annotations

from nexus.redis.client import (
    REDIS_EXTRA,
    check_url,
    describe_error,
    open_redis,
    raise_if_cancelled,
    redact_url,
)
from nexus.redis.ratelimit import RateLimitUnavailableError, RedisRateLimitStore
from nexus.redis.transport import RedisTransport

__all__ = [
    "REDIS_EXTRA",
    "RateLimitUnavailableError",
    "RedisRateLimitStore",
    "RedisTransport",
    "check_url",
    "describe_error",
    "open_redis",
    "raise_if_cancelled",
    "redact_url",
]

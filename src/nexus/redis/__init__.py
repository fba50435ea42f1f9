"""Redis for Nexus instances that share state: rate-limit buckets, clients and their URLs.

Every module imports `redis` (the `redis` extra: `pip install 'nexus-platform[redis]'`) only
when it opens a client, so importing this package costs nothing without it.
"""

from __future__ import annotations

from nexus.redis.client import REDIS_EXTRA, check_url, describe_error, open_redis, redact_url
from nexus.redis.ratelimit import RateLimitUnavailableError, RedisRateLimitStore

__all__ = [
    "REDIS_EXTRA",
    "RateLimitUnavailableError",
    "RedisRateLimitStore",
    "check_url",
    "describe_error",
    "open_redis",
    "redact_url",
]

"""The cache plugin's settings: `plugins.cache` in nexus.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class CacheSettings(BaseModel):
    """Where the cache lives and how long entries last.

    ```yaml
    plugins:
      cache:
        backend: redis                     # or memory (the default): one cache per process
        url: ${REDIS_URL:-redis://127.0.0.1:6379/0}
        default_ttl: 300                   # seconds; unset keeps entries until evicted
    ```
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["memory", "redis"] = Field(
        default="memory", description="memory: per process; redis: shared by every process."
    )
    url: SecretStr | None = Field(
        default=None, description="The Redis URL (redis://, rediss:// or unix://); redis only."
    )
    max_entries: int = Field(
        default=10_000, ge=1, description="Entries kept in memory, all plugins together."
    )
    default_ttl: float | None = Field(
        default=None, gt=0, description="Seconds an entry lives when set without a ttl."
    )
    key_prefix: str = Field(
        default="nexus:cache",
        min_length=1,
        pattern=r"^\S+$",
        description="The start of every Redis key: <key_prefix>:<plugin>:<key>.",
    )
    timeout: float = Field(
        default=2.0, gt=0, description="Seconds to connect to Redis and to wait for answers."
    )
    lock_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds one process may compute a missing value before others try too.",
    )

    @model_validator(mode="after")
    def _redis_needs_url(self) -> CacheSettings:
        if self.backend != "redis":
            return self
        if self.url is None:
            raise ValueError("backend 'redis' needs url, e.g. redis://127.0.0.1:6379/0")
        if not self.url.get_secret_value().startswith(_REDIS_SCHEMES):
            raise ValueError("url must start with redis://, rediss:// or unix://")
        return self

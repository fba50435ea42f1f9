"""The cluster plugin's settings: `plugins.cluster` in nexus.yaml."""

from __future__ import annotations

import os
import socket

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def default_instance_id() -> str:
    """`<hostname>-<pid>`: unique among the processes of one deployment."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ClusterSettings(BaseModel):
    """Where the desired plugin set lives, and how often this instance checks in.

    ```yaml
    plugins:
      cluster:
        redis_url: ${REDIS_URL}
        heartbeat_interval: 5      # seconds; a silent instance is gone after 3 of them
    ```
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: SecretStr | None = Field(
        default=None,
        description="The Redis every instance shares (redis://, rediss:// or unix://). "
        "Unset: the plugin stays idle (one instance needs no cluster control).",
    )
    key_prefix: str = Field(
        default="nexus:cluster",
        min_length=1,
        pattern=r"^\S+$",
        description="The start of every key: <prefix>:desired, <prefix>:instance:<id>, ...",
    )
    instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^\S+$",
        description="This instance's name in reports; default <hostname>-<pid>.",
    )
    heartbeat_interval: float = Field(
        default=5.0, gt=0, description="Seconds between two reports of this instance."
    )
    report_ttl: float | None = Field(
        default=None,
        gt=0,
        description="Seconds a report outlives its last heartbeat (an instance that stops "
        "answering disappears then); default three heartbeat intervals.",
    )
    reconcile_interval: float | None = Field(
        default=None,
        gt=0,
        description="Seconds between two full comparisons with the desired set, which catch "
        "up on missed notifications; default the heartbeat interval.",
    )
    timeout: float = Field(default=2.0, gt=0, description="Seconds to wait for Redis.")

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(_REDIS_SCHEMES):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return url

    @model_validator(mode="after")
    def _check_ttl(self) -> ClusterSettings:
        if self.report_ttl is not None and self.report_ttl <= self.heartbeat_interval:
            raise ValueError(
                f"report_ttl ({self.report_ttl:g} s) must be longer than heartbeat_interval "
                f"({self.heartbeat_interval:g} s), or reports expire between heartbeats"
            )
        return self

    @property
    def ttl(self) -> float:
        """Seconds a report lives after a heartbeat."""
        return self.report_ttl or 3 * self.heartbeat_interval

    @property
    def reconcile_every(self) -> float:
        """Seconds between two full reconciliations."""
        return self.reconcile_interval or self.heartbeat_interval

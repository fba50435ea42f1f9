"""The scheduler plugin's settings: `plugins.scheduler` in nexus.yaml."""

from __future__ import annotations

import os
import socket

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def default_instance_id() -> str:
    """`<hostname>-<pid>`: unique among the processes of one deployment."""
    return f"{socket.gethostname()}-{os.getpid()}"


class SchedulerSettings(BaseModel):
    """Where run locks live, and how this instance is named in them.

    ```yaml
    plugins:
      scheduler:
        redis_url: ${REDIS_URL}     # unset: every instance runs every job
    ```
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis shared by every instance, so each run happens on one of them "
        "(redis://, rediss:// or unix://). Unset: every instance runs every job itself.",
    )
    key_prefix: str = Field(
        default="nexus:scheduler",
        min_length=1,
        pattern=r"^\S+$",
        description="The start of every run lock's key: <key_prefix>:job:<plugin>:<job>:<due>.",
    )
    instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="This instance's name in run locks; default <hostname>-<pid>.",
    )
    timeout: float = Field(default=2.0, gt=0, description="Seconds to wait for Redis.")
    min_lock_ttl: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a run's lock lives at least (a whole period if that is longer): "
        "instances whose clocks differ by less never run one due time twice.",
    )

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(_REDIS_SCHEMES):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return url

"""The admin plugin's settings: `plugins.admin` in nexus.yaml."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AdminSettings(BaseModel):
    """Sessions, the event stream and the metrics window of the dashboard."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_idle_timeout: timedelta = Field(
        timedelta(minutes=30),
        gt=timedelta(0),
        description="A session ends after this long without a request.",
    )
    session_lifetime: timedelta = Field(
        timedelta(hours=8),
        gt=timedelta(0),
        description="A session ends this long after sign-in, however active.",
    )
    session_cache_ttl: float = Field(
        5.0,
        ge=0,
        description="Seconds a checked session is trusted without reading the database again "
        "(a sign-out on another instance takes this long to be seen here; here it is at once).",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins besides the dashboard's own (scheme://host[:port]) that may send "
        "state-changing requests, e.g. when a proxy rewrites the Host header.",
    )
    recent_events: int = Field(500, ge=1, le=100_000, description="Events kept for the UI.")
    event_data_limit: int = Field(
        4096, ge=64, description="Bytes of an event's data shown before it is cut."
    )
    stream_heartbeat: float = Field(
        15.0, gt=0, description="Seconds between keep-alive comments on an idle event stream."
    )
    stream_lifetime: float = Field(
        30.0,
        gt=0,
        description="Seconds an event stream stays open; browsers reconnect and resume. A "
        "server shutting down waits this long at most for open streams.",
    )
    stream_queue: int = Field(
        256, ge=1, description="Events buffered per stream before the oldest are skipped."
    )
    max_streams: int = Field(32, ge=1, description="Event streams open at once per process.")
    metrics_window: int = Field(
        300, ge=10, le=3600, description="One-second samples kept for the charts."
    )

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            scheme, separator, rest = origin.partition("://")
            if scheme not in ("http", "https") or not separator or not rest or "/" in rest:
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port] with no path, "
                    "like 'https://admin.example.com'"
                )
        return [origin.lower() for origin in origins]

    @field_validator("session_lifetime")
    @classmethod
    def _check_lifetime(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least one minute")
        return value

"""The ``http:`` section of nexus.yaml: which middleware runs, and how; secure by default."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from nexus.http.body_limit import DEFAULT_MAX_BODY_SIZE
from nexus.http.cors import DEFAULT_ALLOW_HEADERS, DEFAULT_ALLOW_METHODS, DEFAULT_EXPOSE_HEADERS
from nexus.http.rate_limit import DEFAULT_EXEMPT_PATHS
from nexus.http.security_headers import DEFAULT_CSP, DEFAULT_CSP_OVERRIDES, DEFAULT_HSTS

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_header_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("a header value cannot contain line breaks")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("a header value must be Latin-1 text") from None
    return value


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class CorsSettings(_Section):
    """Cross-origin access; off (no CORS headers, browsers deny) until origins are listed."""

    allow_origins: list[str] = []
    """Origins as ``https://app.example.com`` (scheme, host, optional port), or ``"*"``."""
    allow_methods: list[str] = list(DEFAULT_ALLOW_METHODS)
    allow_headers: list[str] = list(DEFAULT_ALLOW_HEADERS)
    expose_headers: list[str] = list(DEFAULT_EXPOSE_HEADERS)
    allow_credentials: bool = False
    max_age: int = Field(default=600, ge=0)
    """Seconds a browser may cache a preflight answer."""

    @property
    def is_enabled(self) -> bool:
        """Whether any origin is allowed, so the CORS layer runs at all."""
        return bool(self.allow_origins)

    @field_validator("allow_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            scheme, separator, rest = origin.partition("://")
            if origin != "*" and (
                scheme not in ("http", "https") or not separator or not rest or "/" in rest
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port] with no path, "
                    "like 'https://app.example.com', or '*'"
                )
        return origins

    @model_validator(mode="after")
    def _check_credentials(self) -> CorsSettings:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError(
                "allow_credentials cannot be combined with allow_origins '*': list the origins "
                "that may send credentials"
            )
        return self


class RateLimitSettings(_Section):
    """Requests per client (signed-in user, else IP address), refilled at ``rate`` a second.

    ``store: redis`` shares the buckets between every instance (and worker) using
    ``redis_url``; while Redis fails, requests are let through (a warning is logged at most
    every 30 s), so losing Redis never takes the API down.
    """

    enabled: bool = True
    rate: float = Field(default=20.0, gt=0)
    """Sustained requests per second per key."""
    burst: int = Field(default=100, ge=1)
    """Requests a key may make at once after being idle."""
    store: Literal["memory", "redis"] = "memory"
    """Where buckets live: ``memory`` (per process) or ``redis`` (shared by all instances)."""
    max_keys: int = Field(default=100_000, ge=1)
    """Buckets the in-memory store keeps before it drops the least recently used."""
    redis_url: SecretStr | None = None
    """``redis://[:password@]host[:port][/db]`` (or rediss://, unix://); for ``store: redis``."""
    redis_prefix: str = Field(default="nexus:ratelimit", min_length=1, pattern=r"^\S+$")
    """The start of every bucket's key in Redis."""
    redis_timeout: float = Field(default=0.5, gt=0)
    """Seconds to wait for Redis; a slow Redis adds up to this to a request."""
    exempt_paths: list[str] = list(DEFAULT_EXEMPT_PATHS)

    @model_validator(mode="after")
    def _check_store(self) -> RateLimitSettings:
        if self.store != "redis":
            return self
        if self.redis_url is None:
            raise ValueError(
                "store 'redis' needs redis_url, e.g. redis_url: ${REDIS_URL:-redis://127.0.0.1:6379/0}"
            )
        if not self.redis_url.get_secret_value().startswith(_REDIS_SCHEMES):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return self


class BodyLimitSettings(_Section):
    """The largest request body accepted; larger ones get a 413."""

    enabled: bool = True
    max_bytes: int = Field(default=DEFAULT_MAX_BODY_SIZE, ge=0)


class SecurityHeadersSettings(_Section):
    """Security response headers; an empty string turns one off."""

    enabled: bool = True
    content_security_policy: str = DEFAULT_CSP
    csp_overrides: dict[str, str] = dict(DEFAULT_CSP_OVERRIDES)
    """Path prefix -> Content-Security-Policy for pages that need more (``/docs``, ``/admin``)."""
    frame_options: Literal["DENY", "SAMEORIGIN", ""] = "DENY"
    referrer_policy: str = "no-referrer"
    hsts: str = DEFAULT_HSTS
    """Strict-Transport-Security, sent only over https."""

    @field_validator("content_security_policy", "referrer_policy", "hsts")
    @classmethod
    def _check_value(cls, value: str) -> str:
        return _check_header_value(value)

    @field_validator("csp_overrides")
    @classmethod
    def _check_overrides(cls, overrides: dict[str, str]) -> dict[str, str]:
        for prefix, policy in overrides.items():
            if not prefix.startswith("/"):
                raise ValueError(f"path prefix {prefix!r} must start with '/'")
            _check_header_value(policy)
        return overrides


class GzipSettings(_Section):
    """Gzip for responses of at least ``minimum_size`` bytes."""

    enabled: bool = True
    minimum_size: int = Field(default=1024, ge=0)
    compress_level: int = Field(default=6, ge=1, le=9)


class AccessLogSettings(_Section):
    """One JSON line per request on the ``nexus.access`` logger."""

    enabled: bool = True


class HttpSettings(_Section):
    """Settings of the HTTP middleware stack (the ``http:`` section of nexus.yaml)."""

    trusted_hosts: list[str] = []
    """Hosts served (``api.example.com``, ``*.example.com``, ``10.0.0.7``); empty allows any."""
    trusted_proxies: list[str] = []
    """Proxy addresses or networks whose X-Forwarded-For/-Proto are believed; empty: none."""
    access_log: AccessLogSettings = Field(default_factory=AccessLogSettings)
    security_headers: SecurityHeadersSettings = Field(default_factory=SecurityHeadersSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    body_limit: BodyLimitSettings = Field(default_factory=BodyLimitSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    gzip: GzipSettings = Field(default_factory=GzipSettings)

    @field_validator("trusted_hosts")
    @classmethod
    def _check_hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            name = host[2:] if host.startswith("*.") else host
            if host == "*" or _is_ip_address(host.strip("[]")):
                continue
            if not name or any(c in name for c in ":/ *"):
                raise ValueError(
                    f"{host!r} is not a host name: write 'api.example.com' or '*.example.com' "
                    "(no scheme, port or path)"
                )
        return hosts

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            if proxy == "*":
                continue
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(
                    f"{proxy!r} is not an IP address or network: write '10.0.0.7', "
                    "'10.0.0.0/8', 'fd00::/8' or '*'"
                ) from None
        return proxies

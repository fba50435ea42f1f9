"""The auth plugin's settings: `plugins.auth` in nexus.yaml."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

#: The shortest signing key accepted, in bytes (HS256 wants at least its 256-bit output).
MIN_KEY_BYTES: Final = 32


def decode_signing_key(text: str) -> bytes:
    """The key bytes of a base64 (standard or URL-safe, padding optional) signing key.

    Raises ValueError, without echoing the key, when it is not base64 or too short.
    """
    compact = "".join(text.split()).replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            'must be base64 of at least 32 random bytes; make one with `python -c "import '
            'base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())"`'
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"is {len(key)} bytes long once decoded; a signing key needs at least "
            f"{MIN_KEY_BYTES} random bytes"
        )
    return key


class PasswordHashing(BaseModel):
    """argon2id parameters; the defaults are RFC 9106's low-memory profile (argon2-cffi's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_cost: int = Field(3, ge=1, description="Iterations.")
    memory_cost: int = Field(65536, ge=8, description="Memory in KiB (65536 = 64 MiB).")
    parallelism: int = Field(4, ge=1, description="Lanes.")
    hash_len: int = Field(32, ge=16, description="Hash length in bytes.")
    salt_len: int = Field(16, ge=8, description="Salt length in bytes.")
    max_concurrent: int = Field(
        4, ge=1, description="Hashes computed at once; each one holds memory_cost KiB."
    )


class AuthSettings(BaseModel):
    """Tokens, signing key, login throttling and password policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    access_token_ttl: timedelta = Field(timedelta(minutes=15), gt=timedelta(0))
    refresh_token_ttl: timedelta = Field(timedelta(days=14), gt=timedelta(0))
    signing_key: SecretStr | None = Field(
        None,
        description="Base64 of at least 32 random bytes. Required in production; in "
        "development a key is generated into the plugin's data directory.",
        json_schema_extra={"required_in_production": True},
    )
    algorithm: Literal["HS256"] = "HS256"
    issuer: str = Field("nexus", min_length=1)
    audience: str = Field("nexus", min_length=1)
    clock_skew: timedelta = Field(
        timedelta(seconds=10), ge=timedelta(0), description="Leeway for exp/nbf checks."
    )
    login_rate: float = Field(
        1 / 30, gt=0, description="Sustained login attempts a second per username and client IP."
    )
    login_burst: int = Field(5, ge=1, description="Attempts allowed at once per username and IP.")
    login_ip_rate: float = Field(
        1.0, gt=0, description="Sustained login attempts a second per client IP."
    )
    login_ip_burst: int = Field(30, ge=1, description="Attempts allowed at once per client IP.")
    password_min_length: int = Field(12, ge=1)
    password_max_length: int = Field(1024, ge=1)
    password_hashing: PasswordHashing = Field(default_factory=PasswordHashing)
    api_key_cache_ttl: timedelta = Field(
        timedelta(seconds=30),
        ge=timedelta(0),
        description="How long a verified API key is trusted without a database lookup.",
    )
    verified_token_cache_size: int = Field(
        10_000,
        ge=0,
        description="Verified access tokens remembered until they expire, so a token sent "
        "again skips its signature check; 0 verifies the signature on every request.",
    )
    redis_url: SecretStr | None = Field(
        None,
        description="Redis shared by every instance (redis://, rediss:// or unix://), so the "
        "login throttling limits hold across instances; unset keeps them per process.",
    )
    role_refresh_interval: timedelta = Field(
        timedelta(seconds=30),
        gt=timedelta(0),
        description="How often role permissions are re-read (changes made by other instances).",
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("signing_key")
    @classmethod
    def _check_signing_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_signing_key(value.get_secret_value())
        return value

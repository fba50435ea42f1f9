"""`plugins.email_service` in nexus.yaml: which provider sends, and how to reach it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

#: The templates shipped with the example application (examples/templates).
DEFAULT_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


# `${SMTP_PASSWORD:-}` in nexus.yaml gives "" when the variable is unset: not configured.
BlankIsNone = BeforeValidator(_blank_is_none)


class SmtpSettings(BaseModel):
    """An SMTP server (`provider: smtp`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    username: Annotated[str | None, BlankIsNone] = None
    password: Annotated[SecretStr | None, BlankIsNone] = None
    starttls: bool = Field(False, description="Upgrade the connection with STARTTLS first.")
    timeout: float = Field(10.0, gt=0, description="Seconds to wait for the server.")

    @model_validator(mode="after")
    def _credentials_in_pairs(self) -> SmtpSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password, or neither")
        return self


class SendGridSettings(BaseModel):
    """SendGrid's v3 mail/send API (`provider: sendgrid`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: Annotated[SecretStr | None, BlankIsNone] = None
    base_url: str = Field("https://api.sendgrid.com", description="Changed only in tests.")
    timeout: float = Field(10.0, gt=0, description="Seconds to wait for the API.")


class Settings(BaseModel):
    """`plugins.email_service` in nexus.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["console", "smtp", "sendgrid"] = Field(
        "console", description="console only logs each message (development)."
    )
    sender: str = Field("Nexus example <no-reply@example.com>", description="The From address.")
    product: str = Field("Nexus example", description="The application's name in messages.")
    public_url: str = Field(
        "http://127.0.0.1:8000",
        pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="The application's address as users reach it, for links in messages.",
    )
    verify_path: str = Field(
        "/api/user_manager/verify",
        pattern=r"^/[^?#\s]*$",
        description="The path where the user_manager plugin takes verification tokens.",
    )
    templates_dir: Path | None = Field(
        None,
        description="Message templates; relative to the working directory. "
        "Default: the example application's templates directory.",
    )
    smtp: SmtpSettings = SmtpSettings()
    sendgrid: SendGridSettings = SendGridSettings()

    @model_validator(mode="after")
    def _provider_is_configured(self) -> Settings:
        if self.provider == "sendgrid" and self.sendgrid.api_key is None:
            raise ValueError("provider sendgrid needs sendgrid.api_key (e.g. ${SENDGRID_API_KEY})")
        return self

    @property
    def templates(self) -> Path:
        """The directory the templates are read from."""
        return DEFAULT_TEMPLATES if self.templates_dir is None else self.templates_dir

    def verify_url(self, token: str) -> str:
        """The link that verifies `token`."""
        return f"{self.public_url.rstrip('/')}{self.verify_path}?token={quote(token)}"

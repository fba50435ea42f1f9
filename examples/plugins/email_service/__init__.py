"""The email_service example plugin: templated emails through a configurable provider."""

from __future__ import annotations

from .plugin import EmailService
from .providers import (
    ConsoleProvider,
    DeliveryError,
    EmailProvider,
    OutgoingEmail,
    SendGridProvider,
    SmtpProvider,
)
from .settings import SendGridSettings, Settings, SmtpSettings
from .templates import TemplateError

__all__ = [
    "ConsoleProvider",
    "DeliveryError",
    "EmailProvider",
    "EmailService",
    "OutgoingEmail",
    "SendGridProvider",
    "SendGridSettings",
    "Settings",
    "SmtpProvider",
    "SmtpSettings",
    "TemplateError",
]

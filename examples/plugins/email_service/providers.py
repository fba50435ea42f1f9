"""Ways to send email behind one protocol: the console, an SMTP server, SendGrid's HTTP API.

A provider raises when a message was not accepted: the event bus then retries the handler
and, after its retries, keeps the event as a dead letter, so no failed email goes unnoticed.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import TYPE_CHECKING, Any, Protocol

from .settings import SendGridSettings, Settings, SmtpSettings

if TYPE_CHECKING:
    import httpx


class DeliveryError(Exception):
    """The provider did not accept a message."""


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One message to one recipient."""

    sender: str  # "Name <address>" or an address
    to: str
    subject: str
    text: str
    html: str | None
    template: str  # which template made it, for the provider's statistics


class EmailProvider(Protocol):
    """Sends email somewhere."""

    name: str

    async def send(self, email: OutgoingEmail) -> str:
        """Hand `email` over for delivery and return its message id; raise if refused."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class ConsoleProvider:
    """Logs each message instead of sending it: for development."""

    name = "console"

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    async def send(self, email: OutgoingEmail) -> str:
        """Log the message with its text body."""
        message_id = make_msgid(domain=_domain(email.sender))
        self._logger.info(
            "Email %s to %s, subject %r:\n%s", message_id, email.to, email.subject, email.text
        )
        return message_id

    async def close(self) -> None:
        """Nothing to release."""


class SmtpProvider:
    """Sends through an SMTP server with the standard library, in a worker thread."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    async def send(self, email: OutgoingEmail) -> str:
        """Deliver over SMTP (STARTTLS and login when configured)."""
        message = _mime(email)
        await asyncio.to_thread(self._deliver, message)
        return str(message["Message-ID"])

    def _deliver(self, message: EmailMessage) -> None:
        settings = self._settings
        with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.username is not None and settings.password is not None:
                smtp.login(settings.username, settings.password.get_secret_value())
            smtp.send_message(message)

    async def close(self) -> None:
        """Nothing to release: each message uses its own connection."""


class SendGridProvider:
    """Sends with SendGrid's v3 `mail/send` API."""

    name = "sendgrid"

    def __init__(self, settings: SendGridSettings) -> None:
        try:
            import httpx
        except ImportError:
            raise ImportError("provider sendgrid needs httpx: pip install httpx") from None
        if settings.api_key is None:
            raise ValueError("provider sendgrid needs sendgrid.api_key")
        self._client: httpx.AsyncClient = httpx.AsyncClient(
            base_url=settings.base_url,
            timeout=settings.timeout,
            headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"},
        )

    async def send(self, email: OutgoingEmail) -> str:
        """POST the message; SendGrid answers 202 with the id in `X-Message-Id`."""
        response = await self._client.post("/v3/mail/send", json=_sendgrid_payload(email))
        if response.status_code != 202:
            raise DeliveryError(
                f"SendGrid refused the message to {email.to}: HTTP {response.status_code}"
                f"{_sendgrid_errors(response)}"
            )
        return str(response.headers.get("X-Message-Id", ""))

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()


def create_provider(settings: Settings, logger: logging.Logger) -> EmailProvider:
    """The provider `settings.provider` names."""
    if settings.provider == "smtp":
        return SmtpProvider(settings.smtp)
    if settings.provider == "sendgrid":
        return SendGridProvider(settings.sendgrid)
    return ConsoleProvider(logger)


def _domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "localhost"


def _mime(email: OutgoingEmail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = email.sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=_domain(email.sender))
    message.set_content(email.text)
    if email.html is not None:
        message.add_alternative(email.html, subtype="html")
    return message


def _sendgrid_payload(email: OutgoingEmail) -> dict[str, Any]:
    name, address = parseaddr(email.sender)
    sender: dict[str, str] = {"email": address}
    if name:
        sender["name"] = name
    content = [{"type": "text/plain", "value": email.text}]
    if email.html is not None:
        content.append({"type": "text/html", "value": email.html})
    return {
        "personalizations": [{"to": [{"email": email.to}]}],
        "from": sender,
        "subject": email.subject,
        "content": content,
        "categories": [email.template],
    }


def _sendgrid_errors(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors", [])
        messages = [str(error.get("message")) for error in errors if isinstance(error, dict)]
    except (ValueError, AttributeError):
        return ""
    return f" ({'; '.join(messages)})" if messages else ""

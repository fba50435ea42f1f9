"""email_service: mails every new user a welcome and, when asked, a link to verify the address.

It knows nothing of the user_manager plugin but its `user.created` event, and tells whoever
listens about each message with `email.sent`.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel

from nexus import Event, Health, Plugin, PluginContext, StartupError

from .providers import EmailProvider, OutgoingEmail, create_provider
from .settings import Settings
from .templates import MessageTemplate, load_templates

_COMMON: Final = ("email", "name", "product", "public_url", "user_id")
#: The templates this plugin sends, each with the placeholders it may use.
PLACEHOLDERS: Final = {"welcome": _COMMON, "verify_email": (*_COMMON, "verify_url")}


class UserCreated(BaseModel):
    """The part of a `user.created` event this plugin reads (other fields are ignored)."""

    id: str
    email: str
    name: str
    verification_token: str | None = None


class EmailService(Plugin):
    """Sends the welcome and verification emails through the configured provider."""

    Config = Settings

    async def setup(self, ctx: PluginContext[Settings]) -> None:
        """Check the templates, connect the provider and subscribe to `user.created`."""
        settings = ctx.config
        if ctx.is_production and settings.provider == "console":
            raise StartupError(
                "plugins.email_service.provider is 'console' in production: emails would only "
                "be logged, verification links included. Configure 'smtp' or 'sendgrid'."
            )
        self.ctx = ctx
        self.templates: dict[str, MessageTemplate] = load_templates(
            settings.templates, PLACEHOLDERS
        )
        self.provider: EmailProvider = create_provider(settings, ctx.logger)
        ctx.on_cleanup(self.provider.close)
        # Two subscriptions, so that each message is retried on its own: a verification
        # email that fails never sends the welcome twice.
        ctx.events.subscribe("user.created", self.send_welcome)
        ctx.events.subscribe("user.created", self.send_verification)

    async def health(self) -> Health:
        """Healthy once started; names the provider."""
        return Health.healthy(f"sending with {self.provider.name}")

    async def send_welcome(self, event: Event) -> None:
        """Welcome a new user."""
        await self._send("welcome", UserCreated.model_validate(event.data))

    async def send_verification(self, event: Event) -> None:
        """Send the verification link, if the user must verify their address."""
        user = UserCreated.model_validate(event.data)
        if user.verification_token is not None:
            link = self.ctx.config.verify_url(user.verification_token)
            await self._send("verify_email", user, verify_url=link)

    async def _send(self, template: str, user: UserCreated, **extra: str) -> None:
        settings = self.ctx.config
        values = {
            "email": user.email,
            "name": user.name,
            "product": settings.product,
            "public_url": settings.public_url,
            "user_id": user.id,
            **extra,
        }
        message = self.templates[template].render(values)
        email = OutgoingEmail(
            sender=settings.sender,
            to=user.email,
            subject=message.subject,
            text=message.text,
            html=message.html,
            template=template,
        )
        # No try/except: a failed send must reach the bus, which retries, then dead-letters.
        message_id = await self.provider.send(email)
        sent: dict[str, Any] = {
            "to": user.email,
            "template": template,
            "provider": self.provider.name,
            "message_id": message_id,
        }
        await self.ctx.events.publish("email.sent", sent)

"""The example plugins in-process on a real SQLite database, and a real SMTP server for them."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Callable, Collection, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from nexus.http.app import NexusApp
from nexus.kernel import PluginSource
from nexus.plugins.database import DatabasePlugin
from nexus.testing import create_test_app
from nexus.testing.servers import ServerUnavailable, free_port, services_required
from tests.conftest import builtin_plugin

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_PLUGINS = ("analytics", "email_service", "user_manager")


def database_plugin() -> PluginSource:
    """The built-in database plugin, from its own manifest.json."""
    return builtin_plugin(DatabasePlugin)


AppMaker = Callable[..., NexusApp]


@pytest.fixture
def make_app(tmp_path: Path) -> AppMaker:
    """Build an app of the database and the example plugins named in `only` (default: all).

    Keyword arguments are `plugins.<name>` sections; `events=` sets the `events` section and
    `environment=` `app.environment`. Leave out the plugins a test does not need: a handler
    still busy when the test ends would be cut off mid-transaction.
    """

    def make(
        *,
        only: Collection[str] = EXAMPLE_PLUGINS,
        events: dict[str, Any] | None = None,
        environment: str = "test",
        **plugins: Any,
    ) -> NexusApp:
        sections = {name: {"enabled": False} for name in EXAMPLE_PLUGINS if name not in only}
        config: dict[str, Any] = {
            "app": {"environment": environment},
            "data_dir": str(tmp_path / "data"),
            "plugins": {**sections, **plugins},
        }
        if events is not None:
            config["events"] = events
        return create_test_app(
            plugins=[database_plugin()],
            plugin_paths=[EXAMPLES / "plugins"],
            config=config,
        )

    return make


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free loopback port that keeps every message it gets.

    With `credentials` it requires that login; with `tls` (a cert and key file) it offers
    STARTTLS and accepts the login only after it.
    """

    def __init__(
        self, *, credentials: tuple[str, str] | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            raise ServerUnavailable("aiosmtpd is not installed (pip install aiosmtpd)") from None
        self.messages: list[EmailMessage] = []
        self.logins: list[str] = []
        self.port = free_port()
        options: dict[str, Any] = {}
        if credentials is not None:
            options.update(auth_required=True, authenticator=self._authenticator(credentials))
            options["auth_require_tls"] = tls is not None
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            options.update(tls_context=context, require_starttls=True)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)

    def _authenticator(self, credentials: tuple[str, str]) -> Callable[..., Any]:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            if isinstance(data, LoginPassword):
                login = (data.login.decode(), data.password.decode())
                if login == credentials:
                    self.logins.append(login[0])
                    return AuthResult(success=True)
            return AuthResult(success=False, handled=False)

        return authenticate

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._controller.stop()


def smtp_sink_or_skip(**options: Any) -> SmtpSink:
    """An SmtpSink; skips the test without aiosmtpd (fails under NEXUS_REQUIRE_SERVICES=1)."""
    try:
        return SmtpSink(**options)
    except ServerUnavailable as exc:
        if services_required():
            pytest.fail(f"{exc}; NEXUS_REQUIRE_SERVICES=1 makes this a failure")
        pytest.skip(str(exc))


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    """An SMTP server on a free loopback port, without login."""
    with smtp_sink_or_skip() as sink:
        yield sink

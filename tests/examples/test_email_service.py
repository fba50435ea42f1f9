"""The example email_service plugin: templates, and the console, SMTP and SendGrid providers."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from nexus import StartupError
from nexus.http.app import NexusApp
from nexus.testing import EventRecorder, serve
from nexus.testing.servers import services_required
from tests.examples.conftest import AppMaker, SmtpSink, smtp_sink_or_skip

REGISTER = "/api/user_manager/users"
SENDERS = ("user_manager", "email_service")
API_KEY = "SG.test-key-not-a-secret"


class FakeSendGrid:
    """SendGrid's v3 mail/send on a loopback port (the SaaS cannot run here): keeps each request.

    Answers 202 with an `X-Message-Id`, or `status` with SendGrid's error body.
    """

    def __init__(self, status: int = 202) -> None:
        self.status = status
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": body}
                )
                self.send_response(fake.status)
                if fake.status == 202:
                    self.send_header("X-Message-Id", f"sg-{len(fake.requests)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                error = {"errors": [{"message": "The provided authorization grant is invalid"}]}
                payload = json.dumps(error).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeSendGrid:
        serve = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        serve.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    """A fake SendGrid API that accepts every message."""
    with FakeSendGrid() as fake:
        yield fake


def sendgrid_settings(fake: FakeSendGrid) -> dict[str, Any]:
    """email_service settings that send through `fake`."""
    return {"provider": "sendgrid", "sendgrid": {"api_key": API_KEY, "base_url": fake.url}}


def failure(app: NexusApp, plugin: str) -> str:
    """Why `plugin` is not running."""
    return str(app.kernel.plugins.status(plugin).reason)


async def test_console_provider_logs_both_emails_with_the_link(
    make_app: AppMaker, caplog: pytest.LogCaptureFixture
) -> None:
    """The console provider logs the welcome and the verification email; email.sent follows."""
    app = make_app(only=SENDERS, email_service={"public_url": "https://example.org/app/"})
    recorder = EventRecorder(app, "user.created", "email.sent")
    with caplog.at_level(logging.INFO, logger="nexus.plugins.email_service"):
        async with serve(app) as client:
            await client.post(REGISTER, json={"email": "ada@example.com", "name": "Ada"})
            [created] = await recorder.wait_for("user.created")
            sent = await recorder.wait_for("email.sent", 2)
    token = created.data["verification_token"]
    assert sorted((e.data["template"], e.data["provider"], e.data["to"]) for e in sent) == [
        ("verify_email", "console", "ada@example.com"),
        ("welcome", "console", "ada@example.com"),
    ]
    logged = [r.getMessage() for r in caplog.records if r.name == "nexus.plugins.email_service"]
    [welcome] = [m for m in logged if "subject 'Welcome to Nexus example, Ada'" in m]
    [verification] = [m for m in logged if "Confirm your email address" in m]
    assert "thank you for signing up to Nexus example with ada@example.com" in welcome
    assert f"https://example.org/app/api/user_manager/verify?token={token}\n" in verification
    assert {e.data["message_id"] for e in sent} == {
        m.split(" ")[1] for m in (welcome, verification)
    }


async def test_sendgrid_provider_speaks_the_v3_api(
    make_app: AppMaker, sendgrid: FakeSendGrid
) -> None:
    """A message is POSTed to /v3/mail/send with the key, both bodies and SendGrid's message id."""
    app = make_app(
        only=SENDERS,
        email_service={**sendgrid_settings(sendgrid), "sender": "Example <hello@example.com>"},
        user_manager={"email_verification": False},
    )
    recorder = EventRecorder(app, "email.sent")
    async with serve(app) as client:
        await client.post(REGISTER, json={"email": "ada@example.com", "name": "Ada <b>\nLovelace"})
        [sent] = await recorder.wait_for("email.sent")
    assert sent.data == {
        "to": "ada@example.com",
        "template": "welcome",
        "provider": "sendgrid",
        "message_id": "sg-1",
    }
    [request] = sendgrid.requests
    assert request["path"] == "/v3/mail/send"
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    body = request["json"]
    assert body["personalizations"] == [{"to": [{"email": "ada@example.com"}]}]
    assert body["from"] == {"email": "hello@example.com", "name": "Example"}
    assert body["categories"] == ["welcome"]
    # The name's line break cannot start a new header; in HTML the name is escaped.
    assert body["subject"] == "Welcome to Nexus example, Ada <b> Lovelace"
    text, html = body["content"]
    assert text["type"] == "text/plain" and "Hello Ada <b>\nLovelace," in text["value"]
    assert html["type"] == "text/html" and "Hello Ada &lt;b&gt;\nLovelace," in html["value"]


async def test_a_failing_send_is_retried_then_dead_lettered(make_app: AppMaker) -> None:
    """A refused message is retried by the bus, then kept as a dead letter naming the error."""
    with FakeSendGrid(status=500) as sendgrid:
        app = make_app(
            only=SENDERS,
            email_service=sendgrid_settings(sendgrid),
            user_manager={"email_verification": False},
            events={"retries": 2, "retry_delay": 0},
        )
        recorder = EventRecorder(app, "email.sent")
        async with serve(app) as client:
            await client.post(REGISTER, json={"email": "ada@example.com", "name": "Ada"})
            letters = app.kernel.bus.dead_letters
            for _ in range(500):  # a bounded wait for the retries, not a timing assertion
                if len(letters):
                    break
                await asyncio.sleep(0.01)
            [letter] = letters.list()
    assert letter.subscriber == "email_service:EmailService.send_welcome"
    assert letter.attempts == 3 and len(sendgrid.requests) == 3
    assert letter.error == (
        "DeliveryError: SendGrid refused the message to ada@example.com: HTTP 500 "
        "(The provided authorization grant is invalid)"
    )
    assert API_KEY not in letter.error + letter.traceback
    assert recorder.events == []


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1"]
    try:
        subprocess.run(command, check=True, capture_output=True)
    except FileNotFoundError:
        reason = "openssl is not installed (Debian package openssl)"
        if services_required():
            pytest.fail(f"{reason}; NEXUS_REQUIRE_SERVICES=1 makes this a failure")
        pytest.skip(reason)
    return cert, key


async def test_smtp_provider_logs_in_after_starttls(
    make_app: AppMaker, certificate: tuple[Path, Path]
) -> None:
    """With starttls and credentials the message goes through an encrypted, logged-in session."""
    cert, _ = certificate
    with (
        pytest.MonkeyPatch.context() as patch,
        smtp_sink_or_skip(credentials=("mailer", "s3cret"), tls=certificate) as smtp,
    ):
        patch.setenv("SSL_CERT_FILE", str(cert))  # trust the test's own certificate
        smtp_settings = {"host": "127.0.0.1", "port": smtp.port, "starttls": True}
        app = make_app(
            only=SENDERS,
            email_service={
                "provider": "smtp",
                "smtp": {**smtp_settings, "username": "mailer", "password": "s3cret"},
            },
            user_manager={"email_verification": False},
        )
        recorder = EventRecorder(app, "email.sent")
        async with serve(app) as client:
            await client.post(REGISTER, json={"email": "ada@example.com", "name": "Ada"})
            [sent] = await recorder.wait_for("email.sent")
    assert smtp.logins == ["mailer"]
    [message] = smtp.messages
    assert message["Message-ID"] == sent.data["message_id"]
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Welcome to Nexus example, Ada"


async def test_custom_templates_are_filled_in(
    make_app: AppMaker, smtp_server: SmtpSink, tmp_path: Path
) -> None:
    """Templates from templates_dir are used; `$$` is a literal dollar; no .html, no HTML part."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "welcome.txt").write_text("Subject: Hi ${name}!\n\nYou owe $$5, $email.\n")
    (templates / "verify_email.txt").write_text("Subject: Verify\n\nGo to $verify_url\n")
    app = make_app(
        only=SENDERS,
        email_service={
            "provider": "smtp",
            "smtp": {"host": "127.0.0.1", "port": smtp_server.port},
            "templates_dir": str(templates),
        },
        user_manager={"email_verification": False},
    )
    recorder = EventRecorder(app, "email.sent")
    async with serve(app) as client:
        await client.post(REGISTER, json={"email": "ada@example.com", "name": "Ada"})
        await recorder.wait_for("email.sent")
    [message] = smtp_server.messages
    assert message["Subject"] == "Hi Ada!"
    assert not message.is_multipart()
    assert message.get_content().splitlines() == ["You owe $5, ada@example.com."]


async def test_broken_templates_fail_the_plugin_with_every_problem(
    make_app: AppMaker, tmp_path: Path
) -> None:
    """An unknown placeholder and a missing template are both reported; the rest keeps running."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "welcome.txt").write_text("Subject: Hi $nickname\n\nHello $name, $ 5\n")
    app = make_app(only=SENDERS, email_service={"templates_dir": str(templates)})
    async with serve(app) as client:
        reason = failure(app, "email_service")
        response = await client.post(REGISTER, json={"email": "ada@example.com", "name": "Ada"})
        assert response.status_code == 201
    assert "welcome.txt (subject) uses $nickname; available: $email, $name, $product" in reason
    assert "welcome.txt (text): a '$' that starts no placeholder; write '$$' for '$'" in reason
    assert "verify_email.txt is missing" in reason


async def test_a_missing_templates_directory_fails_the_plugin(
    make_app: AppMaker, tmp_path: Path
) -> None:
    """A templates_dir that does not exist is named in the plugin's failure."""
    app = make_app(only=SENDERS, email_service={"templates_dir": str(tmp_path / "nowhere")})
    async with serve(app):
        assert f"The templates directory '{tmp_path / 'nowhere'}' does not exist." in failure(
            app, "email_service"
        )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"provider": "sendgrid"}, "provider sendgrid needs sendgrid.api_key"),
        ({"provider": "sendgrid", "sendgrid": {"api_key": ""}}, "needs sendgrid.api_key"),
        ({"smtp": {"username": "mailer"}}, "set both username and password, or neither"),
        ({"public_url": "example.org"}, "public_url"),
        ({"provider": "pigeon"}, "provider"),
    ],
)
async def test_invalid_settings_fail_the_plugin_naming_the_key(
    make_app: AppMaker, settings: dict[str, Any], expected: str
) -> None:
    """Settings that cannot work are refused when the application starts."""
    app = make_app(only=SENDERS, email_service=settings)
    async with serve(app):
        assert expected in failure(app, "email_service")


async def test_console_provider_refuses_production(make_app: AppMaker) -> None:
    """In production the console provider stops the application from starting."""
    app = make_app(only=SENDERS, environment="production", email_service={"provider": "console"})
    with pytest.raises(StartupError, match="provider is 'console' in production"):
        async with serve(app):
            pass


def test_fake_sendgrid_answers_like_the_api() -> None:
    """The fake answers 202 with an id, or the status it is given with SendGrid's error body."""
    with FakeSendGrid() as accepting, FakeSendGrid(status=401) as refusing:
        ok = httpx.post(f"{accepting.url}/v3/mail/send", json={"a": 1})
        denied = httpx.post(f"{refusing.url}/v3/mail/send", json={"a": 1})
    assert (ok.status_code, ok.headers["x-message-id"]) == (202, "sg-1")
    assert denied.status_code == 401 and denied.json()["errors"][0]["message"]
    assert accepting.requests[0]["json"] == {"a": 1}

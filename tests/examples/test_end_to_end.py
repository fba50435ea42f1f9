"""The example application as `make run` serves it: a real `nexus run` process and SMTP server."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from nexus.testing.servers import free_port
from tests.examples.conftest import EXAMPLES, SmtpSink

DEADLINE = 30.0  # seconds any one wait may take before the test gives up
T = TypeVar("T")
FLOW = ("database", "user_manager", "email_service", "analytics")


def wait_until(probe: Callable[[], T | None], what: str, process: subprocess.Popen[bytes]) -> T:
    """Poll `probe` until it returns something; fail if the server dies or DEADLINE passes."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode} while waiting for {what}")
        with contextlib.suppress(httpx.TransportError):
            if (found := probe()) is not None:
                return found
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


@contextlib.contextmanager
def example_app(
    tmp_path: Path, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`nexus run` of a copy of examples/ on a free port; yields its URL and process."""
    app_dir = tmp_path / "app"
    shutil.copytree(EXAMPLES, app_dir, ignore=shutil.ignore_patterns("data", "__pycache__"))
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("NEXUS")}
    for name in ("MAX_USERS", "PUBLIC_URL", "EMAIL_PROVIDER", "EMAIL_SENDER", "SENDGRID_API_KEY"):
        clean.pop(name, None)
    clean = {k: v for k, v in clean.items() if not k.startswith("SMTP_")}
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "nexus.cli", "run", "--config", "nexus.yaml", "--port", str(port)],
        cwd=app_dir,
        env={**clean, "NEXUS__PLUGINS__EMAIL_SERVICE__PUBLIC_URL": url, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield url, process
    except BaseException:
        print((tmp_path / "server.log").read_text(errors="replace"))  # shown by pytest
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def mail_to(smtp: SmtpSink, subject: str) -> Callable[[], EmailMessage | None]:
    """A probe for the message whose subject starts with `subject`."""
    return lambda: next((m for m in smtp.messages if m["Subject"].startswith(subject)), None)


def body(message: EmailMessage, subtype: str) -> str:
    """The message's plain or html body."""
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None and part.get_content_subtype() == subtype
    return str(part.get_content())


@pytest.mark.slow
def test_a_user_registers_gets_both_emails_and_verifies(
    smtp_server: SmtpSink, tmp_path: Path
) -> None:
    """Register over HTTP, receive both emails over SMTP, follow the link, see it counted."""
    env = {
        "NEXUS__PLUGINS__EMAIL_SERVICE__PROVIDER": "smtp",
        "SMTP_HOST": "127.0.0.1",  # through the ${SMTP_HOST:-...} substitution in nexus.yaml
        "NEXUS__PLUGINS__EMAIL_SERVICE__SMTP__PORT": str(smtp_server.port),
        "NEXUS__PLUGINS__USER_MANAGER__EMAIL_VERIFICATION": "true",
        "NEXUS__PLUGINS__USER_MANAGER__MAX_USERS": "1",
    }
    with example_app(tmp_path, env) as (url, process), httpx.Client(base_url=url) as client:

        def readiness() -> bool | None:
            # Only the plugins of this flow: other installed built-ins have tests of their own.
            plugins = client.get("/readyz").json()["plugins"]
            return all(plugins.get(name, {}).get("ready") for name in FLOW) or None

        wait_until(readiness, "the example's plugins to be ready", process)

        response = client.post(
            "/api/user_manager/users", json={"email": "ada@example.com", "name": "Ada"}
        )
        assert response.status_code == 201
        user = response.json()
        assert user["verified"] is False

        welcome = wait_until(mail_to(smtp_server, "Welcome"), "the welcome email", process)
        assert welcome["To"] == "ada@example.com"
        assert welcome["Subject"] == "Welcome to Nexus example, Ada"
        assert "thank you for signing up to Nexus example" in body(welcome, "plain")

        verification = wait_until(
            mail_to(smtp_server, "Confirm"), "the verification email", process
        )
        [link] = re.findall(
            rf"{re.escape(url)}/api/user_manager/verify\?token=\S+", body(verification, "plain")
        )
        assert f'href="{link}"' in body(verification, "html")

        def counted(verified: int) -> dict[str, int] | None:
            total: dict[str, int] = client.get("/api/analytics/signups").json()["total"]
            return total if total["verified"] == verified and total["created"] == 1 else None

        assert wait_until(lambda: counted(0), "the sign-up count", process)
        followed = httpx.get(link)
        assert followed.status_code == 200 and followed.json()["verified"] is True
        assert client.get(f"/api/user_manager/users/{user['id']}").json()["verified"] is True
        assert wait_until(lambda: counted(1), "the verified count", process)
        assert httpx.get(link).status_code == 400

        refused = client.post(
            "/api/user_manager/users", json={"email": "grace@example.com", "name": "Grace"}
        )
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["setting"] == "plugins.user_manager.max_users"
        assert refused.json()["max_users"] == 1

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0
    assert len(smtp_server.messages) == 2
    assert (tmp_path / "app" / "data" / "plugins" / "database" / "nexus.db").is_file()

"""The signing key: required in production, generated once (0600) in development."""

from __future__ import annotations

import base64
import secrets
import stat
from pathlib import Path

import pytest

from nexus import PluginState, StartupError
from nexus.testing import serve
from tests.plugins.auth.conftest import PASSWORD, AppFactory, auth_of, bearer


def key_files(root: Path) -> list[Path]:
    return sorted(root.rglob("signing.key"))


async def test_production_without_a_signing_key_refuses_to_start(make_app: AppFactory) -> None:
    """In production a missing signing key stops the whole application, saying what to set."""
    app = make_app(environment="production")
    with pytest.raises(StartupError, match="NEXUS__PLUGINS__AUTH__SIGNING_KEY"):
        async with serve(app):
            pass


async def test_production_with_a_signing_key_starts(make_app: AppFactory, tmp_path: Path) -> None:
    """A configured key is used as it is, and no key file is written."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    app = make_app(environment="production", auth={"signing_key": key})
    async with serve(app):
        assert app.kernel.plugins.status("auth").state is PluginState.ACTIVE
    assert key_files(tmp_path) == []


async def test_development_key_is_private_and_survives_restarts(
    make_app: AppFactory, tmp_path: Path
) -> None:
    """The generated key file is mode 0600 and reused, so tokens outlive a restart."""
    app = make_app()
    async with serve(app) as client:
        await auth_of(app).create_user("ada", PASSWORD)
        headers = await bearer(client, "ada")
    key_file = tmp_path / "data" / "plugins" / "auth" / "signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_text())) == 32
    first_key = key_file.read_text()
    app = make_app()
    async with serve(app) as client:
        assert (await client.get("/api/auth/me", headers=headers)).status_code == 200
    assert key_file.read_text() == first_key


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (base64.b64encode(b"x" * 31).decode(), "is 31 bytes long once decoded"),
        ("not base64 at all!", "must be base64 of at least 32 random bytes"),
    ],
)
async def test_weak_or_malformed_keys_are_refused(
    make_app: AppFactory, key: str, problem: str
) -> None:
    """A key under 32 bytes or not base64 fails the auth plugin's config, without echoing it."""
    app = make_app(auth={"signing_key": key})
    async with serve(app):
        status = app.kernel.plugins.status("auth")
        assert status.state is PluginState.FAILED
        assert status.failure is not None and status.failure.stage == "config"
        assert problem in status.failure.reason
        assert key not in status.failure.reason

"""The key access tokens are signed with: configured, or generated once for development."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from nexus.errors import NexusError, StartupError
from nexus.plugins.auth.settings import AuthSettings, decode_signing_key

#: The generated development key, inside the plugin's data directory.
KEY_FILE: Final = "signing.key"


def signing_key(settings: AuthSettings, *, is_production: bool, data_dir: Path | None) -> bytes:
    """The configured key; else, outside production, the one kept in `data_dir`.

    In production a missing key is a StartupError: a generated key would differ between
    instances and vanish with the machine, silently signing everybody out.
    """
    if settings.signing_key is not None:
        return decode_signing_key(settings.signing_key.get_secret_value())
    if is_production or data_dir is None:
        raise StartupError(
            "The auth plugin needs a signing key in production: set plugins.auth.signing_key "
            "(e.g. the environment variable NEXUS__PLUGINS__AUTH__SIGNING_KEY) to base64 of 32 "
            'random bytes, made with `python -c "import base64, secrets; '
            'print(base64.b64encode(secrets.token_bytes(32)).decode())"`.'
        )
    return development_key(data_dir / KEY_FILE)


def development_key(path: Path) -> bytes:
    """Read the key at `path`, creating it (mode 0600) on first use; safe across processes."""
    logger = logging.getLogger("nexus.plugins.auth")
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = _create(path)
        logger.warning(
            "Generated a development signing key in %s; set plugins.auth.signing_key in "
            "production.",
            path,
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, 0o600)
        logger.warning("%s was readable by others (mode %o); made it 0600", path, mode)
    try:
        return decode_signing_key(text.strip())
    except ValueError as exc:
        raise NexusError(
            f"The signing key in {path} {exc}. Delete the file to generate a new one "
            f"(everybody will have to sign in again)."
        ) from None


def _create(path: Path) -> str:
    text = base64.b64encode(secrets.token_bytes(32)).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")
    try:
        # link() fails if the file exists: when workers start together, the first one wins
        # and the others read its key.
        os.link(temporary, path)
    except FileExistsError:
        text = path.read_text().strip()
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return text

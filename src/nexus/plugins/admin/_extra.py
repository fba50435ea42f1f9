"""Fail on import, naming the extras to install, when the database or auth libraries are missing."""

from __future__ import annotations

try:
    import argon2  # noqa: F401 - imported only to check that the auth extra is installed
    import jwt  # noqa: F401
    import sqlalchemy.ext.asyncio  # noqa: F401 - and the database extra
except ImportError as exc:  # pragma: no cover - the test environment has every extra
    raise ImportError(
        "The admin plugin needs the database and auth plugins' libraries: "
        "pip install 'nexus-platform[database,auth]'"
    ) from exc

"""Fail on import, naming the extra to install, when SQLAlchemy is missing."""

from __future__ import annotations

try:
    import sqlalchemy.ext.asyncio  # noqa: F401 - imported only to check it is installed
except ImportError as exc:  # pragma: no cover - the test environment has every extra
    raise ImportError(
        "The database plugin needs SQLAlchemy with asyncio support: "
        "pip install 'nexus-platform[database]'"
    ) from exc

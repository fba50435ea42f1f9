"""The user_manager example plugin: registration and email verification."""

from __future__ import annotations

from .plugin import Settings, UserManager

__all__ = ["Settings", "UserManager"]

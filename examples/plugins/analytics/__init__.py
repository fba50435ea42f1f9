"""The analytics example plugin: sign-up statistics built from user events."""

from __future__ import annotations

from .plugin import Analytics, Settings
from .store import Counts, DayCounts, Signups

__all__ = ["Analytics", "Counts", "DayCounts", "Settings", "Signups"]

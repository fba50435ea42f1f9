"""The installed Nexus version (kept apart so the kernel can read it without importing nexus)."""

__version__ = "0.1.0"

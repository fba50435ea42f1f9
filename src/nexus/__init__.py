"""Nexus: a plugin-based application platform for Python on FastAPI."""

__version__ = "0.1.0"

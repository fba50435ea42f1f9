"""The application factory uvicorn imports in each worker process of `nexus run --workers N`.

`nexus run` passes its options through the environment (NEXUS_CONFIG, NEXUS_ENV and
NEXUS__SERVER__* overrides), so every worker loads exactly the configuration the command saw.
"""

from __future__ import annotations

from nexus.cli.serving import build_app
from nexus.http.app import NexusApp, load_app_config


def create_from_env() -> NexusApp:
    """Build the app from the configuration named by NEXUS_CONFIG (uvicorn `factory=True`)."""
    return build_app(load_app_config())

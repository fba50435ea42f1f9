"""`nexus run`: serve the application with uvicorn."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from nexus.cli._options import (
    CommandError,
    FailedError,
    config_option,
    env_option,
    load,
    resolve_config_path,
)
from nexus.cli.serving import build_app, logging_config
from nexus.http.app import NexusApp
from nexus.kernel.config import NexusConfig

#: uvicorn imports this in every worker process when there are several.
FACTORY = "nexus.cli.app_factory:create_from_env"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _overrides(host: str | None, port: int | None, workers: int | None) -> dict[str, str]:
    """The command-line flags as NEXUS__SERVER__* variables: the layer above every file."""
    flags = {"HOST": host, "PORT": port, "WORKERS": workers}
    return {f"NEXUS__SERVER__{k}": str(value) for k, value in flags.items() if value is not None}


@click.command()
@config_option
@click.option("--host", metavar="HOST", help="Interface to listen on. Default: server.host.")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port to listen on. Default: server.port."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Worker processes. Default: server.workers.",
)
@click.option(
    "--reload",
    "live_reload",
    is_flag=True,
    help="Reload a plugin when its files change, in this process (development only).",
)
@env_option
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
def run(
    config_path: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    live_reload: bool,
    environment: str | None,
    log_level: str,
) -> None:
    """Serve the application (flags override the server section of the configuration)."""
    path = resolve_config_path(config_path)
    overrides = _overrides(host, port, workers)
    config = load(path, environment, {**os.environ, **overrides})
    if live_reload and config.is_production:
        raise CommandError(
            "--reload is refused in production (app.environment: production): it re-imports "
            "plugin code while serving. Deploy new code with a restart instead."
        )
    if live_reload and config.server.workers > 1:
        raise CommandError(
            f"--reload runs a single process, but {config.server.workers} workers are "
            f"configured; drop --workers or set server.workers to 1."
        )
    options: dict[str, Any] = {
        "host": config.server.host,
        "port": config.server.port,
        "log_level": log_level,
        "log_config": logging_config(log_level),
        "lifespan": "on",
        # "auto" picks uvloop when it is installed.
        "loop": "auto",
        "http": _http_protocol(),
        # The platform writes its own structured access log (http.access_log).
        "access_log": False,
        # Forwarded headers are honoured only from http.trusted_proxies, by the platform's
        # own middleware; uvicorn would otherwise trust them from 127.0.0.1.
        "proxy_headers": False,
        "server_header": False,
    }
    if config.server.workers > 1:
        _serve_workers(path, environment, overrides, config, options)
    else:
        _serve(build_app(config, live_reload=live_reload), options)


def _http_protocol() -> str:
    """httptools (with a bound on request heads) when installed, else h11 (bounded itself)."""
    try:
        import httptools  # noqa: F401 - only whether it is installed matters here
    except ImportError:
        return "h11"
    return "nexus.cli.protocol:BoundedHttpToolsProtocol"


def _serve(app: NexusApp, options: dict[str, Any]) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, **options))
    with _quiet_signal_replay():
        try:
            server.run()
        except SystemExit as exc:
            if exc.code not in (None, 0):
                raise FailedError("the server did not start; see the log above.") from None


def _serve_workers(
    path: Path | None,
    environment: str | None,
    overrides: dict[str, str],
    config: NexusConfig,
    options: dict[str, Any],
) -> None:
    import uvicorn

    # Worker processes build their own app from the environment: hand them what we loaded.
    if path is not None:
        os.environ["NEXUS_CONFIG"] = str(path.resolve())
    if environment is not None:
        os.environ["NEXUS_ENV"] = environment
    os.environ.update(overrides)
    uvicorn.run(FACTORY, factory=True, workers=config.server.workers, **options)


@contextlib.contextmanager
def _quiet_signal_replay() -> Iterator[None]:
    """Exit 0 after uvicorn shut down gracefully on SIGINT or SIGTERM.

    uvicorn handles those signals itself, then raises them again once it has stopped so that
    their default action runs: a KeyboardInterrupt traceback, or death by SIGTERM. Shutdown is
    complete by then, so the replayed signal is ignored.
    """
    replayed = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda sig, frame: None) for sig in replayed}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

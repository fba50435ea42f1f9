"""Serving the application: live reload and a startup summary around the app's lifespan."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from nexus._version import __version__
from nexus.errors import ConfigError
from nexus.http.app import NexusApp, create_app
from nexus.kernel.config import NexusConfig
from nexus.kernel.kernel import Kernel
from nexus.kernel.lifecycle import PluginState
from nexus.kernel.watcher import PluginWatcher

logger = logging.getLogger("nexus.server")


def server_url(host: str, port: int) -> str:
    """The URL a browser would use for `host:port`."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def build_app(config: NexusConfig, *, live_reload: bool = False) -> NexusApp:
    """The application, announcing itself once started and, with `live_reload`, watching plugins.

    The watcher runs inside the app's lifespan, after the kernel started and before it stops,
    so reloading never replaces the process.
    """
    app = create_app(config)
    inner = app.router.lifespan_context
    url = server_url(config.server.host, config.server.port)

    @asynccontextmanager
    async def lifespan(instance: Any) -> AsyncIterator[Any]:
        async with inner(instance) as state:
            watcher = PluginWatcher(app.kernel) if live_reload else None
            if watcher is not None:
                await watcher.start()
            stop_listening = listen_for_config_reload(app.kernel)
            announce(app.kernel, url, live_reload=live_reload)
            try:
                yield state
            finally:
                stop_listening()
                if watcher is not None:
                    await watcher.stop()

    app.router.lifespan_context = lifespan
    return app


def listen_for_config_reload(kernel: Kernel) -> Callable[[], None]:
    """Re-read the configuration on SIGHUP; returns a callable that stops listening.

    An invalid configuration is logged with every problem and changes nothing.
    """
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            changed = await kernel.reload_config()
        except ConfigError as exc:
            logger.error("Configuration not reloaded: %s", exc)
            return
        names = ", ".join(sorted(changed)) or "none"
        logger.info("Configuration reloaded; plugins with changed settings: %s", names)

    def on_signal() -> None:
        task = loop.create_task(reload())
        pending.add(task)
        task.add_done_callback(pending.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_signal)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / platform
        return lambda: None

    def stop() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return stop


def announce(kernel: Kernel, url: str, *, live_reload: bool = False) -> None:
    """Log one line with the URL and which plugins run (and why the others do not)."""
    statuses = kernel.plugins.statuses()
    active = kernel.plugins.active()
    idle = [
        f"{s.name} ({s.reason or s.state.value})"
        for s in statuses
        if s.enabled and s.state is not PluginState.ACTIVE
    ]
    summary = f"{len(active)} of {len(statuses)} plugins active"
    if active:
        summary += f": {', '.join(active)}"
    if idle:
        summary += f"; not running: {'; '.join(idle)}"
    logger.info(
        "Nexus %s serving %s (environment %s, pid %d%s); %s",
        __version__,
        url,
        kernel.config.environment,
        os.getpid(),
        ", live reload" if live_reload else "",
        summary,
    )


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration plus the `nexus` loggers at `level`.

    Given to uvicorn (not applied here) so worker processes configure it too.
    """
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["nexus"] = {
        "()": "uvicorn.logging.DefaultFormatter",
        "fmt": "%(levelprefix)s %(name)s: %(message)s",
    }
    config["handlers"]["nexus"] = {
        "formatter": "nexus",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["nexus"] = {
        "handlers": ["nexus"],
        "level": level.upper(),
        "propagate": False,
    }
    return config

"""Live reload for development: reload a directory plugin when its files change.

The watcher polls the plugin directories with `os.scandir` and compares each file's
modification time and size, so it needs no extra dependency and works on every file system,
including network and container mounts where change notifications are unreliable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from nexus.errors import NexusError
from nexus.kernel.lifecycle import PluginState
from nexus.kernel.records import PluginStatus

if TYPE_CHECKING:
    from nexus.kernel.kernel import Kernel

logger = logging.getLogger("nexus.reload")

#: relative path inside a plugin directory -> (mtime_ns, size)
Fingerprint = dict[str, tuple[int, int]]

_IGNORED_DIRECTORIES: Final = frozenset({"__pycache__"})
_IGNORED_SUFFIXES: Final = ("~", ".pyc", ".pyo", ".swp", ".swo", ".swx")
# Vim probes whether it may write a directory by creating and deleting a file named 4913.
_IGNORED_NAMES: Final = frozenset({"4913"})


def is_ignored(name: str) -> bool:
    """Whether a file or directory name is noise: caches, hidden files, editor temp files."""
    return (
        name.startswith(".")  # hidden files and Emacs lock files (.#name)
        or name in _IGNORED_DIRECTORIES
        or name in _IGNORED_NAMES
        or name.endswith(_IGNORED_SUFFIXES)
    )


def fingerprint(directory: str | os.PathLike[str]) -> Fingerprint:
    """Every relevant file below `directory`, with its modification time and size."""
    found: Fingerprint = {}
    pending = [(os.fspath(directory), "")]
    while pending:
        path, prefix = pending.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:  # removed while we looked, or unreadable: it has no files for us
            continue
        for entry in entries:
            if is_ignored(entry.name):
                continue
            relative = prefix + entry.name
            with contextlib.suppress(OSError):  # removed since scandir listed it
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, relative + "/"))
                elif entry.is_file():
                    stat = entry.stat()
                    found[relative] = (stat.st_mtime_ns, stat.st_size)
    return found


def snapshot(paths: Iterable[Path]) -> dict[str, Fingerprint]:
    """Plugin name -> fingerprint of its directory, for every `<path>/<name>/` below `paths`.

    When two plugin paths hold the same name, the first wins, as in discovery.
    """
    plugins: dict[str, Fingerprint] = {}
    for base in paths:
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if is_ignored(entry.name) or entry.name in plugins:
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir():
                    plugins[entry.name] = fingerprint(entry.path)
    return plugins


class PluginWatcher:
    """Polls the kernel's plugin directories and reloads each plugin whose files changed.

    A change is acted on once the plugin's files stayed unchanged for `quiet_polls` polls, so
    an editor's save (or a `git checkout`) that touches several files causes one reload.
    """

    def __init__(self, kernel: Kernel, *, interval: float = 0.3, quiet_polls: int = 2) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        if quiet_polls < 1:
            raise ValueError(f"quiet_polls must be at least 1, got {quiet_polls!r}")
        self.kernel = kernel
        self.interval = interval
        self.quiet_polls = quiet_polls
        self._known: dict[str, Fingerprint] | None = None
        self._pending: dict[str, int] = {}  # plugin -> polls without change since its last change
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def is_running(self) -> bool:
        """Whether the polling task is running."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Record the current files, then poll in the background until `stop`."""
        if self.is_running:
            return
        await self.prime()
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stopping), name="nexus plugin watcher")
        paths = ", ".join(str(p) for p in self.kernel.config.plugin_paths) or "none configured"
        logger.info("Watching plugin directories for changes: %s", paths)

    async def stop(self) -> None:
        """Stop polling; a reload in progress finishes first."""
        task, self._task = self._task, None
        if task is None:
            return
        # Cancelling could interrupt a plugin's setup half way; let the loop see the flag.
        self._stopping.set()
        await task

    async def prime(self) -> None:
        """Take the files as they are now as the baseline that changes are measured against."""
        self._known = await asyncio.to_thread(snapshot, self.kernel.config.plugin_paths)
        self._pending.clear()

    async def poll(self) -> list[PluginStatus]:
        """Look for changes once, and reload the plugins that have settled; returns them."""
        if self._known is None:
            await self.prime()
            return []
        current = await asyncio.to_thread(snapshot, self.kernel.config.plugin_paths)
        previous = self._known
        self._known = current
        for name in previous.keys() | current.keys() | self._pending.keys():
            if previous.get(name) != current.get(name):
                self._pending[name] = 0
            elif name in self._pending:
                self._pending[name] += 1
        settled = sorted(n for n, quiet in self._pending.items() if quiet >= self.quiet_polls)
        results: list[PluginStatus] = []
        for name in settled:
            del self._pending[name]
            status = await self._apply(name, present=name in current)
            if status is not None:
                results.append(status)
        return results

    async def _run(self, stopping: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await stopping.wait()
            if stopping.is_set():
                return
            try:
                await self.poll()
            except Exception:
                # The watcher must outlive anything a plugin or the file system does.
                logger.exception("Live reload: checking the plugin directories failed")

    async def _apply(self, name: str, *, present: bool) -> PluginStatus | None:
        manager = self.kernel.plugins
        try:
            if name in manager:
                if not present:
                    await manager.unload(name)
                    logger.warning("Plugin %s was removed from disk; unloaded it", name)
                    return None
                status = await manager.reload(name)
                verb = "Reloaded"
            elif present:
                if not _has_manifest(name, self.kernel.config.plugin_paths):
                    return None  # a directory still being created; its manifest will follow
                status = await manager.load(name)
                verb = "Loaded new"
            else:
                return None
        except NexusError as exc:
            logger.error("Live reload of plugin %s failed: %s", name, exc)
            return None
        except Exception:
            logger.exception("Live reload of plugin %s failed", name)
            return None
        _report(verb, status)
        return status


def _has_manifest(name: str, paths: Iterable[Path]) -> bool:
    return any((base / name / "manifest.json").is_file() for base in paths)


def _report(verb: str, status: PluginStatus) -> None:
    if status.state is PluginState.ACTIVE:
        logger.info("%s plugin %s: active", verb, status.name)
    elif status.state is PluginState.DISABLED:
        logger.info("%s plugin %s: disabled in the configuration", verb, status.name)
    elif status.state is PluginState.FAILED and status.reason:
        logger.error("%s plugin %s: %s", verb, status.name, status.reason)  # "failed at <stage>"
    else:
        reason = f": {status.reason}" if status.reason else ""
        logger.error("%s plugin %s: %s%s", verb, status.name, status.state.value, reason)

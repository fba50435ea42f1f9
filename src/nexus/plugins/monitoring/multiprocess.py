"""prometheus_client's multiprocess mode: one metrics directory shared by a server's workers.

Each worker process writes its metric values to memory-mapped files named after its pid in
`PROMETHEUS_MULTIPROC_DIR`; a scrape adds up every file, so /metrics answered by any worker
shows the totals of all of them. Files of dead pids from an earlier run of the server are
removed on startup; those of a worker that died during this run are kept, so totals do not go
backwards when the server replaces a worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from nexus.errors import NexusError
from nexus.plugins.monitoring._prometheus import prometheus_client

logger = logging.getLogger("nexus.plugins.monitoring")

ENV_VAR: Final = "PROMETHEUS_MULTIPROC_DIR"
#: Records which server run the files belong to (the id of its master process).
RUN_FILE: Final = "nexus-run"
_LOCK_FILE: Final = ".nexus-lock"


def resolve_directory(configured: Path | None, *, workers: int, data_dir: Path) -> Path | None:
    """The multiprocess directory to use, or None for single-process metrics.

    `PROMETHEUS_MULTIPROC_DIR` wins (a process manager may set it); then `configured`
    (relative to `data_dir`); then `<data_dir>/metrics` when the server runs several workers.
    """
    if configured is not None and not configured.is_absolute():
        configured = data_dir / configured
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        if configured is not None and Path(from_env).resolve() != configured.resolve():
            raise NexusError(
                f"Plugin 'monitoring': plugins.monitoring.multiprocess_dir is {str(configured)!r} "
                f"but {ENV_VAR} is {from_env!r}. Set only one of them, or make them equal."
            )
        return Path(from_env)
    if configured is not None:
        return configured
    if workers > 1:
        return data_dir / "metrics"
    return None


def enable(directory: Path) -> None:
    """Switch this process's new metrics to files in `directory` (for good: it is process-wide).

    The environment variable also reaches child processes, and is what prometheus_client
    reads when it opens a file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_VAR] = str(directory)
    values = prometheus_client.values
    if values.ValueClass is values.MutexValue:
        # Set once per process: a second file-backed class would map the same files twice.
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def is_enabled() -> bool:
    """Whether new metrics in this process are file-backed."""
    values = prometheus_client.values
    return values.ValueClass is not values.MutexValue


def prepare_directory(directory: Path, *, run_id: int) -> list[str]:
    """Remove stale files of dead processes; returns the names removed.

    `run_id` names this run of the server (the master's pid for workers, else the process's
    own). Files of dead pids from another run go; in the same run only the live-gauge files of
    dead pids go, so counters and histograms keep what a replaced worker counted.
    """
    directory.mkdir(parents=True, exist_ok=True)
    removed: list[str] = []
    with _locked(directory / _LOCK_FILE):
        marker = directory / RUN_FILE
        previous = _read_int(marker)
        same_run = previous == run_id
        if previous is not None and not same_run and _is_alive(previous):
            logger.warning(
                "Metrics directory %s is in use by another server (pid %d); its totals and "
                "this server's will be added up. Give each server its own directory.",
                directory,
                previous,
            )
            same_run = True
        for path in sorted(directory.glob("*.db")):
            pid = _pid_of(path.name)
            if pid is None or _is_alive(pid):
                continue
            if same_run and not path.name.startswith("gauge_live"):
                continue
            path.unlink(missing_ok=True)
            removed.append(path.name)
        if not same_run:
            marker.write_text(str(run_id))
    return removed


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`, so workers starting together clean up one at a time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: workers are not forked there anyway
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _pid_of(name: str) -> int | None:
    """The pid in a prometheus_client file name such as `counter_1234.db`."""
    stem = name.removesuffix(".db")
    _, _, pid = stem.rpartition("_")
    return int(pid) if pid.isdigit() else None


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to someone else
        return True
    return True

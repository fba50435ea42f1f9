"""Real Redis and PostgreSQL servers for tests, started from installed binaries on free ports.

When a binary is missing the helpers raise `ServerUnavailable`; the pytest fixtures turn that
into a skip with the reason, or into a failure when `NEXUS_REQUIRE_SERVICES=1` (as in CI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

POSTGRES_BIN_DIRS = (
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
)


class ServerUnavailable(RuntimeError):
    """A server binary needed by a test is not installed here."""


def services_required() -> bool:
    """Whether missing servers must fail tests instead of skipping them (CI sets this)."""
    return os.environ.get("NEXUS_REQUIRE_SERVICES") == "1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, *, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"server process exited with code {process.returncode} before listening"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout:g} s")


@dataclass(frozen=True)
class RedisServer:
    """A running redis-server."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """redis://127.0.0.1:<port>/0"""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Stop the server (it may be restarted with `restart_redis`)."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailable("redis-server is not installed (Debian package redis-server)")
    return binary


def start_redis(port: int | None = None) -> RedisServer:
    """Start redis-server on 127.0.0.1 (a free port unless given), without persistence."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            _redis_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
    except BaseException:
        process.kill()
        raise
    return RedisServer(port, process)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A Redis server for the duration of the block."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL cluster with trust authentication for `user`."""

    port: int
    user: str
    data_dir: Path
    pg_ctl: str

    @property
    def url(self) -> str:
        """An asyncpg SQLAlchemy URL for the `postgres` database."""
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/postgres"


def _postgres_bin() -> Path:
    for directory in POSTGRES_BIN_DIRS:
        if Path(directory, "initdb").is_file():
            return Path(directory)
    raise ServerUnavailable(
        "PostgreSQL server binaries are not installed (Debian package postgresql)"
    )


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: drop to the postgres user when we are root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextlib.contextmanager
def postgres_server(user: str = "nexus") -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster on a free port for the duration of the block."""
    bin_dir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="nexus-pg-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    port = free_port()
    pg_ctl = str(bin_dir / "pg_ctl")
    try:
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "--no-sync"]
            ),
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
            ),
            check=True,
            capture_output=True,
        )
        wait_for_port(port)
        yield PostgresServer(port, user, data, pg_ctl)
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)

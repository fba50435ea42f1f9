"""The real-server helpers start servers that answer, and stop them."""

from __future__ import annotations

import socket
import subprocess
from typing import Any

import pytest

from nexus.testing.servers import ServerUnavailable, free_port, start_redis


def test_redis_server_answers_ping(redis_server: Any) -> None:
    """The session Redis answers PING on its loopback port."""
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=2) as conn:
        conn.sendall(b"PING\r\n")
        assert conn.recv(16) == b"+PONG\r\n"


def test_postgres_server_runs_queries(postgres_server: Any) -> None:
    """The session PostgreSQL accepts connections from its user."""
    out = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(postgres_server.port),
            "-U",
            postgres_server.user,
            "-d",
            "postgres",
            "-tAc",
            "select 40 + 2",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "42"


def test_stopped_redis_frees_its_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """After stop() nothing listens on the server's port; a missing binary is reported clearly."""
    try:
        server = start_redis()
    except ServerUnavailable:
        pytest.skip("redis-server is not installed")
    server.stop()
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", server.port), timeout=0.5),
    ):
        pass
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServerUnavailable, match="redis-server is not installed"):
        start_redis(free_port())

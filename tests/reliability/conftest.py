"""The example application as `nexus run` serves it (every plugin, SQLite in tmp), with users."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nexus.testing.servers import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PASSWORD = "correct horse battery staple"
#: The example server's token signing key (base64 of 32 bytes), so tests can forge tokens.
SIGNING_KEY = "bmV4dXMtcmVsaWFiaWxpdHktdGVzdHMtc2lnbmluZy1rZXk="
CONFIG = ("--config", "nexus.yaml")
DEADLINE = 30.0  # seconds the server may take to start or stop


@dataclass(frozen=True)
class ExampleServer:
    """A running `nexus run` of the example application and bearer tokens of its users."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    admin_token: str
    user_token: str

    def log_text(self) -> str:
        """What the server printed so far."""
        return self.log.read_text(errors="replace")


def _environment(data_dir: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("NEXUS")}
    return {
        **clean,
        "NEXUS__DATA_DIR": str(data_dir),
        # The fuzzer sends hundreds of requests a second from one address.
        "NEXUS__HTTP__RATE_LIMIT__ENABLED": "false",
        "NEXUS__PLUGINS__AUTH__SIGNING_KEY": SIGNING_KEY,
        "NEXUS__PLUGINS__AUTH__PASSWORD_HASHING__TIME_COST": "1",
        "NEXUS__PLUGINS__AUTH__PASSWORD_HASHING__MEMORY_COST": "1024",
        "NEXUS__PLUGINS__AUTH__PASSWORD_HASHING__PARALLELISM": "1",
    }


def _create_user(app_dir: Path, env: dict[str, str], username: str, *flags: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "nexus.cli", "users", "create", username, *CONFIG, *flags],
        cwd=app_dir,
        env=env,
        input=f"{PASSWORD}\n".encode(),
        check=True,
        capture_output=True,
        timeout=DEADLINE,
    )


def _token(url: str, username: str) -> str:
    response = httpx.post(
        f"{url}/api/auth/token",
        data={"grant_type": "password", "username": username, "password": PASSWORD},
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


@contextlib.contextmanager
def run_example(root: Path, extra_env: dict[str, str] | None = None) -> Iterator[ExampleServer]:
    """`nexus run` of a copy of examples/ on a free port, with users `root` (admin) and `ada`."""
    app_dir = root / "app"
    shutil.copytree(EXAMPLES, app_dir, ignore=shutil.ignore_patterns("data", "__pycache__"))
    env = {**_environment(root / "data"), **(extra_env or {})}
    _create_user(app_dir, env, "root", "--admin")
    _create_user(app_dir, env, "ada")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "nexus.cli", "run", *CONFIG, "--port", str(port)],
            cwd=app_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the example app did not start:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            time.sleep(0.05)
        yield ExampleServer(url, port, process, log_path, _token(url, "root"), _token(url, "ada"))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def example_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleServer]:
    """The example application served by `nexus run` for the whole session."""
    with run_example(tmp_path_factory.mktemp("example")) as server:
        yield server

"""`nexus users create|list`: the first account of a fresh install comes from the CLI."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from nexus.cli import main
from nexus.testing import serve
from tests.plugins.auth.conftest import PASSWORD, AppFactory, auth_of, login


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NEXUS_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("NEXUS"):
            monkeypatch.delenv(name)


def nexus(*args: str, stdin: str | None = None) -> Result:
    """Run `nexus <args>` in-process with `stdin` (which is then not a terminal)."""
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


async def test_first_user_comes_from_the_cli(make_app: AppFactory, tmp_path: Path) -> None:
    """Nobody can sign in on a fresh install until `nexus users create` makes an account."""
    app = make_app()
    config = str(tmp_path / "nexus.yaml")
    async with serve(app) as client:
        assert (await login(client, "ada")).status_code == 401
        listed = await asyncio.to_thread(nexus, "users", "list", "--config", config)
        assert listed.exit_code == 0 and "No users yet" in listed.stdout

        created = await asyncio.to_thread(
            nexus, "users", "create", "ada", "--admin", "--config", config, stdin=PASSWORD + "\n"
        )
        assert created.exit_code == 0, created.output
        assert created.stdout == "Created user 'ada' (admin).\n"
        assert PASSWORD not in created.output

        response = await login(client, "ada")
        assert response.status_code == 200
        me = await client.get(
            "/api/auth/me",
            headers={"Authorization": f"Bearer {response.json()['access_token']}"},
        )
        assert me.json()["roles"] == ["admin"]
        users = await auth_of(app).users()
        assert [u.username for u in users] == ["ada"]

    listed = await asyncio.to_thread(nexus, "users", "list", "--config", config)
    assert listed.exit_code == 0
    assert listed.stdout.splitlines()[0].split() == ["USERNAME", "ROLES", "ACTIVE", "CREATED"]
    assert listed.stdout.splitlines()[1].split()[:3] == ["ada", "admin", "yes"]


def test_create_refuses_bad_input(make_app: AppFactory, tmp_path: Path) -> None:
    """A short or missing password and an unknown role exit 2; a taken name exits 1."""
    make_app()  # writes nexus.yaml; the CLI creates the tables itself
    config = str(tmp_path / "nexus.yaml")
    short = nexus("users", "create", "ada", "--config", config, stdin="short\n")
    assert short.exit_code == 2
    assert "needs at least 12" in short.stderr and short.stderr.startswith("nexus: ")
    empty = nexus("users", "create", "ada", "--password-stdin", "--config", config, stdin="")
    assert empty.exit_code == 2 and "No password on standard input" in empty.stderr
    unknown = nexus(
        "users", "create", "ada", "--role", "wizard", "--config", config, stdin=PASSWORD
    )
    assert unknown.exit_code == 2 and "Unknown role(s): wizard" in unknown.stderr
    assert nexus("users", "create", "ada", "--config", config, stdin=PASSWORD).exit_code == 0
    taken = nexus("users", "create", "ADA", "--config", config, stdin=PASSWORD)
    assert taken.exit_code == 1 and "already exists" in taken.stderr
    listed = nexus("users", "list", "--json", "--config", config)
    assert [(u["username"], u["roles"]) for u in json.loads(listed.stdout)] == [("ada", [])]


def _expect(fd: int, text: str, seen: bytearray) -> None:
    """Read the terminal until `text` appeared (or fail after 60 s)."""
    deadline = time.monotonic() + 60
    while text.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            pytest.fail(f"the terminal never showed {text!r}; it showed {bytes(seen)!r}")
        try:
            seen += os.read(fd, 4096)
        except OSError:  # EIO: the process ended and closed the terminal
            pytest.fail(f"the process ended before showing {text!r}: {bytes(seen)!r}")


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pseudo-terminal becomes /dev/tty


def test_create_asks_twice_on_a_terminal(make_app: AppFactory, tmp_path: Path) -> None:
    """On a terminal the password is prompted for twice, without echo, and never in argv."""
    make_app()
    config = str(tmp_path / "nexus.yaml")
    controller, terminal = os.openpty()
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith("NEXUS")}
    process = subprocess.Popen(
        [sys.executable, "-m", "nexus.cli", "users", "create", "ada", "--config", config],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        preexec_fn=_take_terminal,
        env=environment,
    )
    os.close(terminal)
    seen = bytearray()
    try:
        _expect(controller, "Password:", seen)
        os.write(controller, PASSWORD.encode() + b"\n")
        _expect(controller, "Repeat for confirmation:", seen)
        os.write(controller, PASSWORD.encode() + b"\n")
        _expect(controller, "Created user 'ada'", seen)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    assert PASSWORD.encode() not in seen
    listed = nexus("users", "list", "--json", "--config", config)
    assert [u["username"] for u in json.loads(listed.stdout)] == ["ada"]

"""`nexus run`: a real server in a subprocess, stopped by SIGTERM; live reload in the same process."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nexus._version import __version__
from nexus.cli.app_factory import create_from_env
from tests.cli.conftest import Nexus, Project

DEADLINE = 20.0  # seconds any one wait may take before the test gives up

SERVED = """
import os
from fastapi import APIRouter
from nexus import Plugin

class Main(Plugin):
    async def setup(self, ctx):
        router = APIRouter()

        @router.get("/value")
        async def value() -> dict:
            return {{"value": {value!r}}}

        @router.get("/pid")
        async def pid() -> dict:
            return {{"pid": os.getpid()}}

        ctx.http.include_router(router)
"""


def served(value: str) -> str:
    """Plugin code answering GET /value with `value` and GET /pid with the process id."""
    return SERVED.format(value=value)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    """A `nexus run` subprocess and where it listens."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(errors="replace")

    def get(self, path: str) -> httpx.Response:
        """GET `path` from the server."""
        return httpx.get(self.url + path, timeout=5)

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Poll `condition` until it holds; fail with the server's output after DEADLINE."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited ({self.process.returncode}):\n{self.output()}")
            with contextlib.suppress(httpx.TransportError):
                if condition():
                    return
            time.sleep(0.05)
        pytest.fail(f"gave up waiting for {what}; server output:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=DEADLINE)


def start(project: Project, *args: str) -> subprocess.Popen[bytes]:
    """Start `python -m nexus.cli run` in the project directory, output into server.log."""
    with (project.root / "server.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "nexus.cli", "run", "--config", str(project.config), *args],
            cwd=project.root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def serving(project: Project, *args: str) -> Iterator[Server]:
    """A running server on a free port; always killed at the end."""
    port = free_port()
    process = start(project, "--port", str(port), *args)
    server = Server(process, f"http://127.0.0.1:{port}", project.root / "server.log")
    try:
        server.wait_for(lambda: server.get("/livez").status_code == 200, "/livez")
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=DEADLINE)


@pytest.mark.slow
def test_run_serves_plugins_and_stops_cleanly_on_sigterm(project: Project) -> None:
    """The server answers plugin routes, logs a startup summary and exits 0 on SIGTERM."""
    project.plugins.write("alpha", served("a1"))
    project.plugins.write("beta", served("b1"))
    with serving(project) as server:
        assert server.get("/api/alpha/value").json() == {"value": "a1"}
        assert server.get("/readyz").json()["status"] == "ready"
        pid = server.get("/api/beta/pid").json()["pid"]
        assert pid == server.process.pid
        assert server.stop() == 0
    output = server.output()
    assert (
        f"Nexus {__version__} serving {server.url} (environment development, pid {pid}); "
        f"2 of 2 plugins active: alpha, beta"
    ) in output
    assert "Application shutdown complete." in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_live_reload_swaps_plugin_code_in_the_same_process(project: Project) -> None:
    """--reload picks up an edit without a restart; a syntax error fails only that plugin."""
    project.plugins.write("alpha", served("a1"))
    project.plugins.write("beta", served("b1"))
    with serving(project, "--reload") as server:
        pid = server.get("/api/alpha/pid").json()["pid"]
        assert server.get("/api/alpha/value").json() == {"value": "a1"}

        (project.plugins.root / "alpha" / "plugin.py").write_text(served("a2-edited"))
        server.wait_for(
            lambda: server.get("/api/alpha/value").json() == {"value": "a2-edited"}, "the edit"
        )
        assert server.get("/api/alpha/pid").json() == {"pid": pid}

        (project.plugins.root / "alpha" / "plugin.py").write_text("def broken(:\n")
        server.wait_for(lambda: server.get("/api/alpha/value").status_code == 404, "the failure")
        missing = server.get("/api/alpha/value")
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["status"] == 404
        ready = server.get("/readyz")
        assert ready.status_code == 503
        alpha = ready.json()["plugins"]["alpha"]
        assert alpha["state"] == "failed" and "Syntax error" in alpha["detail"]
        assert ready.json()["plugins"]["beta"]["state"] == "active"
        assert server.get("/api/beta/value").json() == {"value": "b1"}
        assert server.get("/api/beta/pid").json() == {"pid": pid}
        assert server.stop() == 0
    output = server.output()
    assert "nexus.reload: Reloaded plugin alpha: active" in output
    assert "nexus.reload: Reloaded plugin alpha: failed at import: Syntax error" in output


@pytest.mark.slow
def test_several_workers_each_build_the_app(project: Project) -> None:
    """--workers 2 starts two processes serving the same plugins, and SIGTERM stops them all."""
    project.plugins.write("alpha", served("a1"))
    with serving(project, "--workers", "2") as server:
        pattern = re.compile(
            rf"serving {re.escape(server.url)} \(environment development, pid (\d+)\)"
        )
        server.wait_for(lambda: len(pattern.findall(server.output())) == 2, "two workers")
        workers = {int(pid) for pid in pattern.findall(server.output())}
        assert len(workers) == 2 and server.process.pid not in workers
        assert server.get("/api/alpha/pid").json()["pid"] in workers
        assert server.stop() == 0


@pytest.mark.slow
def test_port_in_use_fails_with_exit_1(project: Project) -> None:
    """A port that cannot be bound ends `nexus run` with exit 1 and a one-line reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = start(project, "--port", str(taken.getsockname()[1]))
        try:
            assert process.wait(timeout=DEADLINE) == 1
        finally:
            if process.poll() is None:
                process.kill()
    output = (project.root / "server.log").read_text()
    assert "nexus: the server did not start; see the log above." in output
    assert "Traceback" not in output


def test_reload_is_refused_in_production(project: Project, nexus: Nexus) -> None:
    """--reload in production exits 2 with the reason, before anything starts."""
    project.configure(app={"environment": "production"})
    result = nexus("run", "--config", str(project.config), "--reload")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "nexus: --reload is refused in production (app.environment: production)"
    )


def test_reload_is_refused_with_several_workers(project: Project, nexus: Nexus) -> None:
    """--reload cannot watch several processes: exit 2 saying what to change."""
    result = nexus("run", "--config", str(project.config), "--reload", "--workers", "3")
    assert result.exit_code == 2
    assert "--reload runs a single process, but 3 workers are configured" in result.stderr


def test_worker_factory_reads_the_configuration_from_the_environment(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_from_env loads NEXUS_CONFIG with NEXUS_ENV and NEXUS__SERVER__* overrides."""
    project.plugins.write("alpha")
    project.overlay("staging", app={"name": "Staged"})
    monkeypatch.chdir(project.root.parent)
    monkeypatch.setenv("NEXUS_CONFIG", str(project.config))
    monkeypatch.setenv("NEXUS_ENV", "staging")
    monkeypatch.setenv("NEXUS__SERVER__PORT", "8123")
    app = create_from_env()
    config = app.kernel.config
    assert (config.app.name, config.environment, config.server.port) == ("Staged", "staging", 8123)
    assert config.plugin_paths == [project.root / "plugins"]


CONFIGURED = """
from fastapi import APIRouter
from pydantic import BaseModel
from nexus import Plugin

class Settings(BaseModel):
    word: str = "hello"

class Main(Plugin):
    Config = Settings

    async def setup(self, ctx):
        router = APIRouter()

        @router.get("/word")
        async def word() -> dict:
            return {"word": ctx.config.word}

        ctx.http.include_router(router)
"""


@pytest.mark.slow
def test_sighup_reloads_the_configuration(project: Project) -> None:
    """SIGHUP re-reads nexus.yaml: a valid change reaches the plugin, an invalid one changes nothing."""
    project.plugins.write("greeter", CONFIGURED)
    project.configure(plugins={"greeter": {"word": "hello"}})
    with serving(project) as server:
        assert server.get("/api/greeter/word").json() == {"word": "hello"}
        project.configure(plugins={"greeter": {"word": "howdy"}})
        server.process.send_signal(signal.SIGHUP)
        server.wait_for(
            lambda: server.get("/api/greeter/word").json() == {"word": "howdy"}, "new word"
        )
        project.configure(plugins={"greeter": {"word": ["not", "a", "word"]}})
        server.process.send_signal(signal.SIGHUP)
        server.wait_for(lambda: "Configuration not reloaded" in server.output(), "the rejection")
        assert "plugins.greeter.word" in server.output()
        assert server.get("/api/greeter/word").json() == {"word": "howdy"}
        assert server.stop() == 0

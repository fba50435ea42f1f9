"""Shared helpers for the HTTP benchmarks: servers on free loopback ports, wrk runs, tables.

Follows PERF-NOTES: one uvicorn worker (uvloop + httptools, no access log) pinned to CPU 0,
wrk pinned to CPU 1, `wrk -t1 -c32 --latency`, sides alternated, medians of the rounds.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
SERVER_CPU = "0"
LOAD_CPU = "1"
CONNECTIONS = 32

#: nexus.yaml for the Nexus side: the default middleware stack in production. The rate limiter
#: stays in the stack (its cost is measured) but with a bucket no benchmark can empty, since
#: every wrk connection comes from one address and the default (20/s) would answer 429s.
NEXUS_YAML = """\
app: {{name: bench, environment: production}}
plugin_paths: [{plugins}]
data_dir: {data}
http:
  rate_limit: {{rate: 1000000000, burst: 1000000000}}
"""


def make_parser(description: str) -> argparse.ArgumentParser:
    """`--duration` (seconds per wrk run, default 10) and `--rounds` (default 3)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    return parser


def require_wrk() -> str:
    """The wrk binary, or exit saying how to install it."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: run `apt-get install -y wrk` (Debian).")
    return wrk


def pinned(cpu: str, command: Sequence[str]) -> list[str]:
    """`command` pinned to `cpu` with taskset when it is available (it is on Debian)."""
    taskset = shutil.which("taskset")
    if taskset is None or (os.cpu_count() or 1) < 2:
        return list(command)
    return [taskset, "-c", cpu, *command]


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def get(
    port: int, path: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """One GET request on a fresh connection; returns (status, body)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@dataclass
class Server:
    """A uvicorn process serving `target` (`module:attribute`) from `app_dir`.

    `headers` go with every request to it: the readiness check and each wrk request.
    """

    label: str
    target: str
    app_dir: Path
    ready_path: str
    factory: bool = False
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until `ready_path` answers 200."""
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            self.target,
            "--app-dir",
            str(self.app_dir),
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        if self.factory:
            command.append("--factory")
        self.log = self.app_dir / f"server-{self.label.replace(' ', '_')}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                pinned(SERVER_CPU, command),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.label} server exited:\n{self.log_text()}")
            try:
                status, body = get(self.port, self.ready_path, headers=self.headers)
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                return
            raise SystemExit(f"{self.label} answered {status} on {self.ready_path}: {body!r}")
        self.stop()
        raise SystemExit(f"{self.label} did not become ready within {timeout:g} s")

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        if self.process is None:
            return float("nan")
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        # After the command name: state is field 3, utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_text(self) -> str:
        """What the server printed (warnings and errors only, at --log-level warning)."""
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def stop(self) -> None:
        """Stop the server by its pid: SIGTERM, then SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    """Start every server (in order) and stop them all on exit."""
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@dataclass
class WrkResult:
    """What one wrk run reports."""

    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]  # "50", "75", "90", "99" -> milliseconds
    max_ms: float = float("nan")
    non_2xx: int = 0
    socket_errors: int = 0
    server_cpu_us: float = float("nan")  # filled in by `alternate`

    @property
    def failures(self) -> int:
        return self.non_2xx + self.socket_errors


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Requests, requests/s, latency percentiles and failures from `wrk --latency` output."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if total is None or rps is None:
        raise SystemExit(f"could not read wrk's output:\n{output}")
    latency = {
        percent: _ms(value)
        for percent, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", output, re.MULTILINE)
    }
    maximum = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=int(total.group(1)),
        seconds=_ms(total.group(2) + total.group(3)) / 1000,
        rps=float(rps.group(1)),
        latency_ms=latency,
        max_ms=_ms(maximum.group(1)) if maximum else float("nan"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def wrk_command(
    url: str,
    duration: float,
    connections: int = CONNECTIONS,
    headers: Mapping[str, str] | None = None,
) -> list[str]:
    """The pinned wrk command line of PERF-NOTES for `url` (wrk takes whole seconds)."""
    seconds = max(1, round(duration))
    header_options = [
        option for name, value in (headers or {}).items() for option in ("-H", f"{name}: {value}")
    ]
    return pinned(
        LOAD_CPU,
        [
            require_wrk(),
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            *header_options,
            url,
        ],
    )


def run_wrk(
    url: str,
    duration: float,
    connections: int = CONNECTIONS,
    headers: Mapping[str, str] | None = None,
) -> WrkResult:
    """Load `url` for `duration` seconds (sending `headers`) and return what wrk measured."""
    done = subprocess.run(
        wrk_command(url, duration, connections, headers),
        check=True,
        capture_output=True,
        text=True,
    )
    return parse_wrk(done.stdout)


def start_wrk(
    url: str,
    duration: float,
    connections: int = CONNECTIONS,
    headers: Mapping[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start wrk in the background; `stop_wrk` ends it early and reads its report."""
    return subprocess.Popen(
        wrk_command(url, duration, connections, headers),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_wrk(process: subprocess.Popen[str]) -> WrkResult:
    """Interrupt a running wrk (it reports what it measured so far) and parse the report."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # wrk stops its threads and prints its statistics
    output, _ = process.communicate(timeout=30)
    return parse_wrk(output)


def alternate(
    targets: Sequence[tuple[Server, str]], duration: float, rounds: int, *, warmup: float = 2.0
) -> dict[str, list[WrkResult]]:
    """Load each (server, path) in turn, `rounds` times, after a short warm-up of each.

    Each result also records the server's CPU time per request, read from /proc: on a shared
    machine it moves far less than requests/s when other processes compete for the CPU.
    """
    for server, path in targets:
        run_wrk(server.url(path), warmup, headers=server.headers)
    results: dict[str, list[WrkResult]] = {server.label: [] for server, _ in targets}
    for round_index in range(rounds):
        order = targets if round_index % 2 == 0 else list(reversed(targets))
        for server, path in order:
            cpu_before = server.cpu_seconds()
            result = run_wrk(server.url(path), duration, headers=server.headers)
            cpu = server.cpu_seconds() - cpu_before
            result.server_cpu_us = cpu / max(result.requests, 1) * 1e6
            results[server.label].append(result)
            print(
                f"  round {round_index + 1}: {server.label:<24} {result.rps:8.0f} req/s  "
                f"{result.server_cpu_us:6.1f} us CPU/req "
                f"({result.rps * result.server_cpu_us / 1e4:3.0f}% busy)  "
                f"p99 {result.latency_ms.get('99', float('nan')):7.2f} ms  "
                f"failures {result.failures}",
                flush=True,
            )
    return results


def median_rps(results: list[WrkResult]) -> float:
    return statistics.median(result.rps for result in results)


def median_cpu_us(results: list[WrkResult]) -> float:
    return statistics.median(result.server_cpu_us for result in results)


def paired_ratio(results: dict[str, list[WrkResult]], base: str, other: str) -> float:
    """Median over rounds of `other`'s req/s over `base`'s in the same round.

    Each round runs the sides back to back, so a round's ratio compares them under the same
    conditions; on a machine whose speed drifts over tens of seconds it moves less than the
    ratio of the medians.
    """
    return statistics.median(
        mine.rps / theirs.rps for mine, theirs in zip(results[other], results[base], strict=True)
    )


def min_busy_percent(results: dict[str, list[WrkResult]]) -> float:
    """The lowest share of a CPU any side's server got in a run (see print_table)."""
    return min(run.rps * run.server_cpu_us / 1e4 for runs in results.values() for run in runs)


def median_latency(results: list[WrkResult], percent: str) -> float:
    return statistics.median(result.latency_ms.get(percent, float("nan")) for result in results)


def print_table(results: dict[str, list[WrkResult]]) -> None:
    """One line per side: medians of req/s, server CPU per request and latency; failures.

    `CPU busy` is the share of one CPU the server used (req/s x CPU per request): well below
    100% means it waited for the CPU (other processes ran on it), so its req/s reads low.
    """
    print(
        f"{'':26} {'req/s':>8} {'CPU us/req':>11} {'CPU busy':>9} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'p99 ms':>8} {'failures':>9}"
    )
    for label, runs in results.items():
        busy = statistics.median(run.rps * run.server_cpu_us / 1e4 for run in runs)
        print(
            f"{label:26} {median_rps(runs):8.0f} {median_cpu_us(runs):11.1f} {busy:8.0f}% "
            f"{median_latency(runs, '50'):8.2f} {median_latency(runs, '90'):8.2f} "
            f"{median_latency(runs, '99'):8.2f} {sum(run.failures for run in runs):9d}"
        )


def write_nexus_config(
    root: Path, plugins: Path, *, name: str = "nexus.yaml", data: str = "data", extra: str = ""
) -> Path:
    """nexus.yaml for the Nexus side (see NEXUS_YAML) in `root`, with `extra` YAML appended.

    `name` and `data` (the data directory, under `root`) let several servers run from one root
    without sharing their files.
    """
    path = root / name
    path.write_text(NEXUS_YAML.format(plugins=plugins, data=root / data) + extra)
    return path

"""Soak: the example application under sustained mixed load, with plugin reloads, watching memory.

One uvicorn worker serves the example application (examples/, every installed built-in,
SQLite in a temporary directory; see bench/_common.py). A load generator in a separate process
(httpx + asyncio, `--concurrency` clients) mixes registrations, user look-ups and analytics
reads for `--duration` seconds, while the application reloads `--plugin` every
`--reload-every` seconds (in process, as bench/reload_under_load.py does). Reported: requests,
failures (any non-2xx other than the 409 of a duplicate; target 0), p50/p99 latency, and the
server's resident memory (VmRSS) after a warm-up and at the end (target: growth < 10%).

`--reload-cycles N` instead reloads the plugin N times back to back (no load) and reports the
memory after the first `--warmup-cycles` reloads and at the end (target: within 5%).

    .venv/bin/python bench/soak.py [--duration 60] [--reload-every 5] [--plugin analytics]
    .venv/bin/python bench/soak.py --reload-cycles 1000

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Server

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

APP = """
import asyncio
import json
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path

from nexus.http.app import create_app

app = create_app(os.environ["NEXUS_SOAK_CONFIG"], entry_points=True)
SIGNALS = Path(os.environ["NEXUS_SOAK_SIGNALS"])
PLUGIN = os.environ["NEXUS_SOAK_PLUGIN"]


async def reload_on_signal():
    # `go.<n>` holds how many reloads to do; `done.<n>` gets their timings and states.
    n = 1
    while True:
        go = SIGNALS / f"go.{n}"
        if not go.exists():
            await asyncio.sleep(0.01)
            continue
        count = int(go.read_text() or "1")
        durations, states = [], []
        for _ in range(count):
            started = time.perf_counter()
            status = await app.kernel.plugins.reload(PLUGIN)
            durations.append(time.perf_counter() - started)
            states.append(status.state.value)
        (SIGNALS / f"done.{n}").write_text(json.dumps({"durations": durations, "states": states}))
        n += 1


platform_lifespan = app.router.lifespan_context


@asynccontextmanager
async def lifespan(instance):
    async with platform_lifespan(instance):
        task = asyncio.get_running_loop().create_task(reload_on_signal())
        try:
            yield
        finally:
            task.cancel()


app.router.lifespan_context = lifespan
"""

CONFIG = """
app: {{name: soak, environment: staging}}
plugin_paths: [{plugins}]
data_dir: {data}
http:
  rate_limit: {{enabled: false}}
  access_log: {{enabled: false}}
plugins:
  auth: {{signing_key: {key}}}
  user_manager: {{max_users: 100000000, email_verification: true}}
  email_service: {{provider: console, public_url: "http://127.0.0.1"}}
"""


class Reloader:
    """Asks the server for reloads through signal files and waits for them."""

    def __init__(self, signals: Path, server: Server) -> None:
        self.signals, self.server, self.window = signals, server, 0
        self.durations: list[float] = []
        self.states: list[str] = []

    def request(self, count: int) -> None:
        self.window += 1
        # Written aside, then renamed: the server must never read a half-written count.
        pending = self.signals / f"pending.{self.window}"
        pending.write_text(str(count))
        pending.rename(self.signals / f"go.{self.window}")

    def wait(self, timeout: float = 3600) -> None:
        done = self.signals / f"done.{self.window}"
        deadline = time.monotonic() + timeout
        while not done.exists():
            if (
                time.monotonic() > deadline
                or self.server.process is None
                or (self.server.process.poll() is not None)
            ):
                raise SystemExit(f"reloads did not finish; server log:\n{self.server.log_text()}")
            time.sleep(0.01)
        report = json.loads(done.read_text())
        self.durations += report["durations"]
        self.states += report["states"]


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` in KiB (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


async def _load(base: str, seconds: float, concurrency: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    failures: dict[str, int] = {}
    ids: list[str] = []
    stop = time.monotonic() + seconds

    async def client(number: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            i = 0
            while time.monotonic() < stop:
                i += 1
                kind = ("register", "read", "analytics", "read")[i % 4]
                started = time.perf_counter()
                try:
                    if kind == "register" or not ids:
                        email = f"c{number}-{i}-{time.monotonic_ns()}@example.com"
                        body = {"email": email, "name": "Soak"}
                        response = await http.post("/api/user_manager/users", json=body)
                        if response.status_code == 201:
                            ids.append(response.json()["id"])
                    elif kind == "read":
                        response = await http.get(f"/api/user_manager/users/{ids[i % len(ids)]}")
                    else:
                        response = await http.get("/api/analytics/signups", params={"days": 7})
                    status = str(response.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                latencies.append(time.perf_counter() - started)
                if not status.startswith("2"):
                    failures[f"{kind} {status}"] = failures.get(f"{kind} {status}", 0) + 1

    await asyncio.gather(*(client(n) for n in range(concurrency)))
    return {"requests": len(latencies), "failures": failures, "latencies": latencies}


def load_process(base: str, seconds: float, concurrency: int, queue: Any) -> None:
    """The load generator's process: run the clients, send the results back."""
    queue.put(asyncio.run(_load(base, seconds, concurrency)))


def start_load(base: str, seconds: float, concurrency: int) -> tuple[Any, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=load_process, args=(base, seconds, concurrency, queue))
    process.start()
    return process, queue


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def write_app(root: Path) -> Path:
    shutil.copytree(
        EXAMPLES, root / "example", ignore=shutil.ignore_patterns("data", "__pycache__")
    )
    (root / "soak_app.py").write_text(textwrap.dedent(APP))
    (root / "signals").mkdir()
    config = root / "nexus.yaml"
    key = "c29hay1iZW5jaG1hcmstc2lnbmluZy1rZXktMzItYnl0ZXM="
    config.write_text(
        CONFIG.format(plugins=root / "example" / "plugins", data=root / "data", key=key)
    )
    return config


def soak(args: argparse.Namespace, server: Server, reloader: Reloader) -> dict[str, Any]:
    """Load for the duration with a reload every `reload_every` seconds."""
    assert server.process is not None
    warmup = min(10.0, args.duration / 6)
    process, queue = start_load(server.url(""), args.duration + warmup, args.concurrency)
    time.sleep(warmup)
    rss_start = rss_kib(server.process.pid)
    began = time.monotonic()
    next_reload = began + args.reload_every
    while time.monotonic() - began < args.duration:
        if time.monotonic() >= next_reload:
            reloader.request(1)
            reloader.wait()
            next_reload += args.reload_every
        time.sleep(0.05)
    result = queue.get(timeout=120)
    process.join()
    rss_end = rss_kib(server.process.pid)
    latencies = result["latencies"]
    failures = sum(result["failures"].values())
    return {
        "mode": "soak",
        "seconds": args.duration,
        "requests": result["requests"],
        "rps": round(result["requests"] / (args.duration + warmup), 1),
        "failures": failures,
        "failure_kinds": result["failures"],
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "reloads": len(reloader.states),
        "reloads_not_active": sum(state != "active" for state in reloader.states),
        "rss_start_kib": rss_start,
        "rss_end_kib": rss_end,
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
        "targets_met": failures == 0 and rss_end < rss_start * 1.10,
    }


def cycles(args: argparse.Namespace, server: Server, reloader: Reloader) -> dict[str, Any]:
    """`reload_cycles` reloads back to back; memory after the warm-up reloads and at the end."""
    assert server.process is not None
    reloader.request(args.warmup_cycles)
    reloader.wait()
    rss_start = rss_kib(server.process.pid)
    reloader.request(args.reload_cycles)
    reloader.wait()
    rss_end = rss_kib(server.process.pid)
    durations = reloader.durations[args.warmup_cycles :]
    return {
        "mode": "reload-cycles",
        "reloads": len(durations),
        "reloads_not_active": sum(state != "active" for state in reloader.states),
        "reload_p50_ms": round(statistics.median(durations) * 1000, 2),
        "reload_p99_ms": round(percentile(durations, 0.99) * 1000, 2),
        "rss_start_kib": rss_start,
        "rss_end_kib": rss_end,
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
        "targets_met": rss_end < rss_start * 1.05,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of measured load")
    parser.add_argument("--reload-every", type=float, default=5.0, help="seconds between reloads")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--plugin", default="analytics", help="the plugin to reload")
    parser.add_argument("--reload-cycles", type=int, default=0, help="reload N times, no load")
    parser.add_argument("--warmup-cycles", type=int, default=200, help="reloads before measuring")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nexus-soak-") as tmp:
        root = Path(tmp)
        config = write_app(root)
        server = Server(
            "example",
            "soak_app:app",
            root,
            "/readyz",
            env={
                "NEXUS_SOAK_CONFIG": str(config),
                "NEXUS_SOAK_SIGNALS": str(root / "signals"),
                "NEXUS_SOAK_PLUGIN": args.plugin,
            },
        )
        server.start()
        try:
            reloader = Reloader(root / "signals", server)
            report = (
                cycles(args, server, reloader)
                if args.reload_cycles
                else soak(args, server, reloader)
            )
        finally:
            server.stop()
    width = max(len(key) for key in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()

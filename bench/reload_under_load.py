"""Reload under load: a directory plugin reloaded 50 times while wrk keeps requesting its route.

The server (create_app, production, default middleware; see bench/_common.py) serves the
directory plugin `bench` at `/api/bench/hello`. Its app module wraps the lifespan with a
background task that, each time the benchmark drops a `go.<n>` file, reloads the plugin
(`app.kernel.plugins.reload`, which re-imports its code from disk) `--reloads` times with
`--pause` seconds between reloads, then writes `done.<n>` with the reload timings.

Each round measures a baseline window (wrk for `--duration` s, no reloads), then a reload window
(wrk from the trigger until the reloads are done). Every non-2xx response and socket error wrk
reports counts as a failed request; the target is zero. p99 latency of the two windows is
compared (medians of the rounds).

    .venv/bin/python bench/reload_under_load.py [--duration 10] [--rounds 3] [--reloads 50]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Server,
    WrkResult,
    make_parser,
    require_wrk,
    run_wrk,
    running,
    start_wrk,
    stop_wrk,
    write_nexus_config,
)

ROUTE = "/api/bench/hello"

PLUGIN = """
from fastapi import APIRouter
from nexus import Plugin


class Main(Plugin):
    async def setup(self, ctx):
        router = APIRouter()

        @router.get("/hello")
        async def hello():
            return {"hello": "world", "status": "ok"}

        ctx.http.include_router(router)
"""

APP = """
import asyncio
import json
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path

from nexus.http.app import create_app

app = create_app(os.environ["NEXUS_BENCH_CONFIG"], entry_points=False)
SIGNALS = Path(os.environ["NEXUS_BENCH_SIGNALS"])
RELOADS = int(os.environ["NEXUS_BENCH_RELOADS"])
PAUSE = float(os.environ["NEXUS_BENCH_PAUSE"])


async def reload_on_signal():
    window = 1
    while True:
        if not (SIGNALS / f"go.{window}").exists():
            await asyncio.sleep(0.01)
            continue
        await asyncio.sleep(PAUSE)
        began = time.perf_counter()
        durations, states = [], []
        for _ in range(RELOADS):
            started = time.perf_counter()
            status = await app.kernel.plugins.reload("bench")
            durations.append(time.perf_counter() - started)
            states.append(status.state.value)
            await asyncio.sleep(PAUSE)
        report = {"seconds": time.perf_counter() - began, "durations": durations, "states": states}
        (SIGNALS / f"done.{window}").write_text(json.dumps(report))
        window += 1


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


def write_app(root: Path) -> Path:
    """The app module and the directory plugin in `root`; returns the config path."""
    (root / "reload_app.py").write_text(textwrap.dedent(APP))
    plugin = root / "plugins" / "bench"
    plugin.mkdir(parents=True)
    manifest = {"name": "bench", "version": "1.0.0", "entry": "plugin:Main"}
    (plugin / "manifest.json").write_text(json.dumps(manifest))
    (plugin / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    (root / "signals").mkdir()
    return write_nexus_config(root, root / "plugins")


def reload_window(server: Server, signals: Path, window: int) -> tuple[WrkResult, dict[str, Any]]:
    """Load the route from the trigger until the server reports its reloads done."""
    wrk = start_wrk(server.url(ROUTE), 600)
    time.sleep(0.3)  # wrk's connections are up before the first reload
    (signals / f"go.{window}").touch()
    done = signals / f"done.{window}"
    deadline = time.monotonic() + 600
    while not done.exists():
        if time.monotonic() > deadline or (server.process and server.process.poll() is not None):
            stop_wrk(wrk)
            raise SystemExit(f"reloads did not finish; server log:\n{server.log_text()}")
        time.sleep(0.05)
    time.sleep(0.3)  # and it is still loading after the last swap
    result = stop_wrk(wrk)
    report: dict[str, Any] = json.loads(done.read_text())
    return result, report


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=50, help="reloads per window")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between reloads")
    args = parser.parse_args()
    require_wrk()

    baselines: list[WrkResult] = []
    windows: list[WrkResult] = []
    reports: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nexus-bench-") as tmp:
        root = Path(tmp)
        config = write_app(root)
        signals = root / "signals"
        env = {
            "NEXUS_BENCH_CONFIG": str(config),
            "NEXUS_BENCH_SIGNALS": str(signals),
            "NEXUS_BENCH_RELOADS": str(args.reloads),
            "NEXUS_BENCH_PAUSE": str(args.pause),
        }
        server = Server("nexus", "reload_app:app", root, ROUTE, env=env)
        with running(server):
            run_wrk(server.url(ROUTE), 2)  # warm-up
            print(
                f"wrk -t1 -c32 on {ROUTE}; baseline windows of {args.duration:g} s, reload windows "
                f"of {args.reloads} reloads {args.pause:g} s apart; {args.rounds} rounds",
                flush=True,
            )
            for window in range(1, args.rounds + 1):
                baseline = run_wrk(server.url(ROUTE), args.duration)
                loaded, report = reload_window(server, signals, window)
                baselines.append(baseline)
                windows.append(loaded)
                reports.append(report)
                states = report["states"]
                if set(states) != {"active"}:
                    raise SystemExit(f"a reload did not end active: {states}")
                for label, result in (("baseline", baseline), ("reloading", loaded)):
                    print(
                        f"  round {window}: {label:<10} {result.requests:8d} requests "
                        f"{result.rps:8.0f} req/s  p99 {result.latency_ms['99']:7.2f} ms  "
                        f"max {result.max_ms:7.2f} ms  failures {result.failures}",
                        flush=True,
                    )

    durations = [seconds * 1000 for report in reports for seconds in report["durations"]]
    base_p99 = statistics.median(r.latency_ms["99"] for r in baselines)
    load_p99 = statistics.median(r.latency_ms["99"] for r in windows)
    failures = sum(r.failures for r in windows)
    base_failures = sum(r.failures for r in baselines)
    served = sum(r.requests for r in windows)
    print()
    print(
        f"{'':22} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'failures':>9}"
    )
    for label, results in (("baseline (no reloads)", baselines), ("during reloads", windows)):
        print(
            f"{label:22} {sum(r.requests for r in results):9d} "
            f"{statistics.median(r.rps for r in results):8.0f} "
            f"{statistics.median(r.latency_ms['50'] for r in results):8.2f} "
            f"{statistics.median(r.latency_ms['99'] for r in results):8.2f} "
            f"{max(r.max_ms for r in results):8.2f} {sum(r.failures for r in results):9d}"
        )
    print(
        f"reloads: {len(durations)}, each {statistics.median(durations):.1f} ms median, "
        f"{max(durations):.1f} ms max (in-process, includes draining in-flight requests)"
    )
    print(f"p99 during reloads / baseline: {load_p99 / base_p99:.2f}; failed requests: {failures}")
    print(
        json.dumps(
            {
                "bench": "reload_under_load",
                "duration_s": args.duration,
                "rounds": args.rounds,
                "reloads_per_round": args.reloads,
                "pause_s": args.pause,
                "requests_during_reloads": served,
                "failures": failures,
                "baseline_failures": base_failures,
                "baseline_rps": round(statistics.median(r.rps for r in baselines), 1),
                "reload_rps": round(statistics.median(r.rps for r in windows), 1),
                "baseline_p99_ms": round(base_p99, 3),
                "reload_p99_ms": round(load_p99, 3),
                "p99_ratio": round(load_p99 / base_p99, 3),
                "reload_max_latency_ms": round(max(r.max_ms for r in windows), 3),
                "reload_ms_median": round(statistics.median(durations), 2),
                "reload_ms_max": round(max(durations), 2),
                "target_failures": 0,
                "meets_target": failures == 0,
            }
        )
    )


if __name__ == "__main__":
    main()

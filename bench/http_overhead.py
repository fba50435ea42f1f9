"""HTTP overhead: a Nexus plugin route behind the default middleware stack, versus bare FastAPI.

Both serve the same small dict: bare FastAPI from `@app.get("/hello")`, Nexus from a directory
plugin at `/api/bench/hello` in an app made by `create_app` (production, default middleware:
request id, access log, security headers, body limit, rate limit, gzip; the rate limiter's
bucket is made too large to refuse, see bench/_common.py). One uvicorn worker each, on CPU 0;
wrk on CPU 1; sides alternate; medians of the rounds. `--access-log` adds a third side whose
access log is switched on (JSON lines to a file), since the default logging level skips it.
`--typed` annotates both routes' results (FastAPI then validates them with pydantic).

    .venv/bin/python bench/http_overhead.py [--duration 10] [--rounds 3] [--access-log] [--typed]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Server,
    alternate,
    make_parser,
    median_cpu_us,
    median_latency,
    median_rps,
    min_busy_percent,
    print_table,
    require_wrk,
    running,
    write_nexus_config,
)

TARGET_RATIO = 0.90
PAYLOAD = '{"hello": "world", "status": "ok"}'

BARE_APP = f"""
from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello(){{returns}}:
    return {PAYLOAD}
"""

NEXUS_APP = """
import logging
import os

from nexus.http.app import create_app

if os.environ.get("NEXUS_BENCH_ACCESS_LOG"):
    handler = logging.FileHandler(os.environ["NEXUS_BENCH_ACCESS_LOG"])
    access = logging.getLogger("nexus.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False

app = create_app(os.environ["NEXUS_BENCH_CONFIG"], entry_points=False)
"""

PLUGIN = f"""
from fastapi import APIRouter
from nexus import Plugin


class Main(Plugin):
    async def setup(self, ctx):
        router = APIRouter()

        @router.get("/hello")
        async def hello(){{returns}}:
            return {PAYLOAD}

        ctx.http.include_router(router)
"""


def write_apps(root: Path, *, typed: bool = False) -> Path:
    """The two app modules and the plugin in `root`; returns the Nexus config path.

    `typed` annotates both routes `-> dict[str, str]`, so FastAPI validates and renders the
    result with pydantic on both sides; unannotated, Nexus renders it with orjson.
    """
    returns = " -> dict[str, str]" if typed else ""
    (root / "bare_app.py").write_text(textwrap.dedent(BARE_APP.replace("{returns}", returns)))
    (root / "nexus_app.py").write_text(textwrap.dedent(NEXUS_APP))
    plugin = root / "plugins" / "bench"
    plugin.mkdir(parents=True)
    manifest = {"name": "bench", "version": "1.0.0", "entry": "plugin:Main"}
    (plugin / "manifest.json").write_text(json.dumps(manifest))
    (plugin / "plugin.py").write_text(textwrap.dedent(PLUGIN.replace("{returns}", returns)))
    return write_nexus_config(root, root / "plugins")


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--access-log", action="store_true", help="add a side logging access")
    parser.add_argument("--typed", action="store_true", help="annotate both routes' results")
    args = parser.parse_args()
    require_wrk()

    with tempfile.TemporaryDirectory(prefix="nexus-bench-") as tmp:
        root = Path(tmp)
        config = write_apps(root, typed=args.typed)
        env = {"NEXUS_BENCH_CONFIG": str(config)}
        servers = [
            Server("bare FastAPI", "bare_app:app", root, "/hello"),
            Server("nexus", "nexus_app:app", root, "/api/bench/hello", env=env),
        ]
        if args.access_log:
            logged = {**env, "NEXUS_BENCH_ACCESS_LOG": str(root / "access.log")}
            servers.append(
                Server("nexus + access log", "nexus_app:app", root, "/api/bench/hello", env=logged)
            )
        with running(*servers):
            bare, nexus = servers[0], servers[1]
            targets = [(server, server.ready_path) for server in servers]
            print(
                f"wrk -t1 -c32 -d{args.duration:g}s, {args.rounds} alternating rounds",
                flush=True,
            )
            results = alternate(targets, args.duration, args.rounds)

    print()
    print_table(results)
    bare_rps = median_rps(results[bare.label])
    nexus_rps = median_rps(results[nexus.label])
    ratio = nexus_rps / bare_rps
    cpu_ratio = median_cpu_us(results[bare.label]) / median_cpu_us(results[nexus.label])
    print(f"ratio nexus/bare: {ratio:.3f} (target >= {TARGET_RATIO})")
    print(f"ratio by server CPU per request (bare/nexus): {cpu_ratio:.3f}")
    result: dict[str, object] = {
        "bench": "http_overhead",
        "duration_s": args.duration,
        "rounds": args.rounds,
        "typed_routes": args.typed,
        "bare_rps": round(bare_rps, 1),
        "nexus_rps": round(nexus_rps, 1),
        "bare_p99_ms": round(median_latency(results[bare.label], "99"), 3),
        "nexus_p99_ms": round(median_latency(results[nexus.label], "99"), 3),
        "bare_cpu_us_per_request": round(median_cpu_us(results[bare.label]), 1),
        "nexus_cpu_us_per_request": round(median_cpu_us(results[nexus.label]), 1),
        "ratio": round(ratio, 3),
        "cpu_ratio": round(cpu_ratio, 3),
        "target_min_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "min_server_busy_pct": round(min_busy_percent(results), 1),
        "failures": sum(run.failures for runs in results.values() for run in runs),
    }
    if args.access_log:
        logged_rps = median_rps(results["nexus + access log"])
        print(f"ratio nexus with access log/bare: {logged_rps / bare_rps:.3f}")
        result["nexus_access_log_rps"] = round(logged_rps, 1)
        result["access_log_ratio"] = round(logged_rps / bare_rps, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

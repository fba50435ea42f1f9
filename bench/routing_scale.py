"""Routing scale: the last route of the last of 300 plugins, versus an app with one plugin.

Both sides are the same Nexus app (create_app, production, default middleware; see
bench/_common.py), with plugins of 5 routes each, generated in code: one plugin on side A,
300 on side B. wrk requests the last route of the last plugin on each. Plugin lookup is one
dict lookup on the first path segment, so the ratio should stay near 1.

    .venv/bin/python bench/routing_scale.py [--duration 10] [--rounds 3] [--plugins 300]

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

TARGET_RATIO = 0.95
ROUTES = 5

APP = f"""
import os

from fastapi import APIRouter
from nexus import Plugin
from nexus.http.app import create_app

ROUTES = {ROUTES}


def endpoint(name, index):
    async def route():
        return {{"plugin": name, "route": index}}

    return route


class Routes(Plugin):
    def __init__(self, name):
        self.manifest = {{"name": name, "version": "1.0.0", "description": "Bench routes"}}

    async def setup(self, ctx):
        router = APIRouter()
        name = self.manifest["name"]
        for index in range(ROUTES):
            router.add_api_route(f"/r{{index}}", endpoint(name, index), methods=["GET"])
        ctx.http.include_router(router)


def make_app():
    count = int(os.environ["NEXUS_BENCH_PLUGINS"])
    plugins = [Routes(f"p{{i:04d}}") for i in range(count)]
    return create_app(os.environ["NEXUS_BENCH_CONFIG"], plugins=plugins, entry_points=False)
"""


def last_route(plugins: int) -> str:
    return f"/api/p{plugins - 1:04d}/r{ROUTES - 1}"


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=300, help="plugins on the large side")
    args = parser.parse_args()
    require_wrk()

    with tempfile.TemporaryDirectory(prefix="nexus-bench-") as tmp:
        root = Path(tmp)
        (root / "routes_app.py").write_text(textwrap.dedent(APP))
        (root / "plugins").mkdir()
        config = str(write_nexus_config(root, root / "plugins"))
        one = Server(
            "1 plugin",
            "routes_app:make_app",
            root,
            last_route(1),
            factory=True,
            env={"NEXUS_BENCH_CONFIG": config, "NEXUS_BENCH_PLUGINS": "1"},
        )
        many = Server(
            f"{args.plugins} plugins",
            "routes_app:make_app",
            root,
            last_route(args.plugins),
            factory=True,
            env={"NEXUS_BENCH_CONFIG": config, "NEXUS_BENCH_PLUGINS": str(args.plugins)},
        )
        with running(one, many):
            targets = [(one, last_route(1)), (many, last_route(args.plugins))]
            print(
                f"{ROUTES} routes per plugin; wrk -t1 -c32 -d{args.duration:g}s on the last "
                f"route of the last plugin, {args.rounds} alternating rounds",
                flush=True,
            )
            results = alternate(targets, args.duration, args.rounds)

    print()
    print_table(results)
    one_rps = median_rps(results[one.label])
    many_rps = median_rps(results[many.label])
    ratio = many_rps / one_rps
    cpu_ratio = median_cpu_us(results[one.label]) / median_cpu_us(results[many.label])
    print(f"ratio {args.plugins} plugins / 1 plugin: {ratio:.3f} (target >= {TARGET_RATIO})")
    print(f"ratio by server CPU per request (1 plugin / {args.plugins}): {cpu_ratio:.3f}")
    print(
        json.dumps(
            {
                "bench": "routing_scale",
                "duration_s": args.duration,
                "rounds": args.rounds,
                "plugins": args.plugins,
                "routes_per_plugin": ROUTES,
                "one_plugin_rps": round(one_rps, 1),
                "many_plugins_rps": round(many_rps, 1),
                "one_plugin_p99_ms": round(median_latency(results[one.label], "99"), 3),
                "many_plugins_p99_ms": round(median_latency(results[many.label], "99"), 3),
                "one_plugin_cpu_us_per_request": round(median_cpu_us(results[one.label]), 1),
                "many_plugins_cpu_us_per_request": round(median_cpu_us(results[many.label]), 1),
                "ratio": round(ratio, 3),
                "cpu_ratio": round(cpu_ratio, 3),
                "target_min_ratio": TARGET_RATIO,
                "meets_target": ratio >= TARGET_RATIO,
                "min_server_busy_pct": round(min_busy_percent(results), 1),
                "failures": sum(run.failures for runs in results.values() for run in runs),
            }
        )
    )


if __name__ == "__main__":
    main()

"""HTTP overhead: a Nexus plugin route behind the default middleware stack, versus bare FastAPI.

Both serve the same small dict: bare FastAPI from `@app.get("/hello")`, Nexus from a directory
plugin at `/api/bench/hello` in an app made by `create_app` (production, default middleware:
request id, access log, security headers, body limit, rate limit, gzip; the rate limiter's
bucket is made too large to refuse, see bench/_common.py). One uvicorn worker each, on CPU 0;
wrk on CPU 1; sides alternate; medians of the rounds. `--access-log` adds a third side whose
access log is switched on (JSON lines to a file), since the default logging level skips it.
`--typed` annotates both routes' results (FastAPI then validates them with pydantic).

`--auth` checks a valid HS256 JWT on every request instead. Bare FastAPI: a `Depends` that calls
`jwt.decode(token, key, algorithms=["HS256"], audience=..., issuer=...)` and returns the claims.
Nexus: production, every built-in plugin enabled through its entry point (database on SQLite in
a temporary directory, auth with an explicit signing key, cache, monitoring, audit) and a plugin
route behind `Depends(require("bench:read"))`. The token is minted once, before the run, by the
auth plugin's own token code with the same key and claims (`roles: ["admin"]`, which holds
every permission). Nexus runs twice: with `verified_token_cache_size: 0`, so every request
verifies the signature (the side the target applies to), and with the default cache.

    .venv/bin/python bench/http_overhead.py [--duration 10] [--rounds 3] [--access-log] [--typed]
    .venv/bin/python bench/http_overhead.py --auth [--duration 10] [--rounds 3] [--typed]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Server,
    WrkResult,
    alternate,
    get,
    make_parser,
    median_cpu_us,
    median_latency,
    median_rps,
    min_busy_percent,
    paired_ratio,
    print_table,
    require_wrk,
    running,
    write_nexus_config,
)

TARGET_RATIO = 0.90
PAYLOAD = '{"hello": "world", "status": "ok"}'
ISSUER = AUDIENCE = "nexus"  # the auth plugin's defaults

BARE_APP = f"""
from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello(){{returns}}:
    return {PAYLOAD}
"""

BARE_AUTH_APP = f"""
import argparse
import base64
import os
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request

KEY = base64.b64decode(os.environ["NEXUS_BENCH_SIGNING_KEY"])
app = FastAPI()


async def claims(request: Request) -> dict[str, Any]:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "Not authenticated", headers={{"WWW-Authenticate": "Bearer"}})
    try:
        return jwt.decode(
            token, KEY, algorithms=["HS256"], audience={AUDIENCE!r}, issuer={ISSUER!r}
        )
    except jwt.InvalidTokenError:
        raise HTTPException(
            401, "Invalid token", headers={{"WWW-Authenticate": "Bearer"}}
        ) from None


@app.get("/hello")
async def hello(claims: Annotated[dict[str, Any], Depends(claims)]){{returns}}:
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

# The built-in plugins come from their entry points, as `kernel.entry_points` in nexus.yaml says.
NEXUS_AUTH_APP = """
import os

from nexus.http.app import create_app

app = create_app(os.environ["NEXUS_BENCH_CONFIG"])
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

AUTH_PLUGIN = f"""
from typing import Annotated

from fastapi import APIRouter, Depends
from nexus import Plugin
from nexus.plugins.auth import Principal, require


class Main(Plugin):
    async def setup(self, ctx):
        router = APIRouter()

        @router.get("/hello")
        async def hello(
            principal: Annotated[Principal, Depends(require("bench:read"))],
        ){{returns}}:
            return {PAYLOAD}

        ctx.http.include_router(router)
"""

#: Every built-in plugin, enabled; SQLite in the server's own data directory.
AUTH_YAML = """\
kernel: {{entry_points: true}}
plugins:
  database: {{enabled: true}}
  auth: {{enabled: true, signing_key: "{key}", verified_token_cache_size: {cache_size}}}
  cache: {{enabled: true}}
  monitoring: {{enabled: true}}
  audit: {{enabled: true}}
"""

#: The auth plugin's default `verified_token_cache_size`.
DEFAULT_TOKEN_CACHE = 10_000


def write_plugin(root: Path, source: str, manifest: Mapping[str, object], returns: str) -> Path:
    """The `bench` directory plugin in `root/plugins`; returns that plugins directory."""
    plugin = root / "plugins" / "bench"
    plugin.mkdir(parents=True)
    (plugin / "manifest.json").write_text(json.dumps(manifest))
    (plugin / "plugin.py").write_text(textwrap.dedent(source.replace("{returns}", returns)))
    return root / "plugins"


def write_apps(root: Path, *, typed: bool = False) -> Path:
    """The two app modules and the plugin in `root`; returns the Nexus config path.

    `typed` annotates both routes `-> dict[str, str]`, so FastAPI validates and renders the
    result with pydantic on both sides; unannotated, Nexus renders it with orjson.
    """
    returns = " -> dict[str, str]" if typed else ""
    (root / "bare_app.py").write_text(textwrap.dedent(BARE_APP.replace("{returns}", returns)))
    (root / "nexus_app.py").write_text(textwrap.dedent(NEXUS_APP))
    manifest = {"name": "bench", "version": "1.0.0", "entry": "plugin:Main"}
    return write_nexus_config(root, write_plugin(root, PLUGIN, manifest, returns))


def write_auth_apps(root: Path, key: str, *, typed: bool = False) -> tuple[Path, Path]:
    """The apps and plugin of `--auth` in `root`; returns the configs (cache off, cache on)."""
    returns = " -> dict[str, str]" if typed else ""
    bare = BARE_AUTH_APP.replace("{returns}", returns)
    (root / "bare_auth_app.py").write_text(textwrap.dedent(bare))
    (root / "nexus_auth_app.py").write_text(textwrap.dedent(NEXUS_AUTH_APP))
    manifest = {
        "name": "bench",
        "version": "1.0.0",
        "entry": "plugin:Main",
        "requires": {"auth": ">=1.0"},
    }
    plugins = write_plugin(root, AUTH_PLUGIN, manifest, returns)

    def config(label: str, cache_size: int) -> Path:
        extra = AUTH_YAML.format(key=key, cache_size=cache_size)
        return write_nexus_config(
            root, plugins, name=f"nexus-{label}.yaml", data=f"data-{label}", extra=extra
        )

    return config("uncached", 0), config("cached", DEFAULT_TOKEN_CACHE)


def mint_token(key: str) -> str:
    """An access token the auth plugin accepts: its own token code, key and claims."""
    from nexus.plugins.auth.settings import decode_signing_key
    from nexus.plugins.auth.tokens import AccessTokens

    tokens = AccessTokens(
        decode_signing_key(key),
        algorithm="HS256",
        issuer=ISSUER,
        audience=AUDIENCE,
        ttl=timedelta(hours=6),  # outlives any run
        leeway=timedelta(seconds=10),
    )
    token, _ = tokens.issue(uuid.uuid4().hex, "bench", ["admin"])
    return token


def summary(results: dict[str, list[WrkResult]], bare: str, nexus: str) -> dict[str, float]:
    """Medians of one Nexus side against the bare side: req/s, p99, CPU and the ratios."""
    bare_rps, nexus_rps = median_rps(results[bare]), median_rps(results[nexus])
    bare_cpu, nexus_cpu = median_cpu_us(results[bare]), median_cpu_us(results[nexus])
    return {
        "rps": round(nexus_rps, 1),
        "p99_ms": round(median_latency(results[nexus], "99"), 3),
        "cpu_us_per_request": round(nexus_cpu, 1),
        "ratio": round(nexus_rps / bare_rps, 3),
        "cpu_ratio": round(bare_cpu / nexus_cpu, 3),
        "paired_ratio": round(paired_ratio(results, bare, nexus), 3),
    }


def run_plain(args: argparse.Namespace) -> None:
    """Bare FastAPI against Nexus's default stack (optionally with the access log on)."""
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
    paired = paired_ratio(results, bare.label, nexus.label)
    print(f"ratio nexus/bare: {ratio:.3f} (target >= {TARGET_RATIO})")
    print(f"ratio by server CPU per request (bare/nexus): {cpu_ratio:.3f}")
    print(f"median of the rounds' ratios: {paired:.3f}")
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
        "paired_ratio": round(paired, 3),
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


def run_auth(args: argparse.Namespace) -> None:
    """Bare FastAPI checking a JWT against Nexus with every built-in, token cache off and on."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    token = mint_token(key)
    headers = {"Authorization": f"Bearer {token}"}
    with tempfile.TemporaryDirectory(prefix="nexus-bench-") as tmp:
        root = Path(tmp)
        uncached_config, cached_config = write_auth_apps(root, key, typed=args.typed)
        bare = Server(
            "bare FastAPI + JWT",
            "bare_auth_app:app",
            root,
            "/hello",
            env={"NEXUS_BENCH_SIGNING_KEY": key},
            headers=headers,
        )
        uncached, cached = (
            Server(
                label,
                "nexus_auth_app:app",
                root,
                "/api/bench/hello",
                env={"NEXUS_BENCH_CONFIG": str(config)},
                headers=headers,
            )
            for label, config in (
                ("nexus, no token cache", uncached_config),
                ("nexus, token cache", cached_config),
            )
        )
        servers = (bare, uncached, cached)
        with running(*servers):
            print(
                f"wrk -t1 -c32 -d{args.duration:g}s, {args.rounds} alternating rounds, "
                "Authorization: Bearer <HS256 JWT>",
                flush=True,
            )
            results = alternate(
                [(server, server.ready_path) for server in servers], args.duration, args.rounds
            )
            logs = {server.label: server.log_text() for server in servers}
            plugins = sorted(json.loads(get(uncached.port, "/readyz")[1])["plugins"])

    print()
    print(f"nexus plugins: {', '.join(plugins)}")
    print_table(results)
    off = summary(results, bare.label, uncached.label)
    on = summary(results, bare.label, cached.label)
    print(
        f"ratio nexus (signature checked on every request)/bare: {off['ratio']:.3f} "
        f"(target >= {TARGET_RATIO}); by server CPU per request: {off['cpu_ratio']:.3f}; "
        f"median of the rounds' ratios: {off['paired_ratio']:.3f}"
    )
    print(
        f"ratio nexus (verified tokens remembered)/bare: {on['ratio']:.3f}; "
        f"by server CPU per request: {on['cpu_ratio']:.3f}; "
        f"median of the rounds' ratios: {on['paired_ratio']:.3f}"
    )
    for label, text in logs.items():
        if text.strip():
            print(f"{label} logged:\n{textwrap.indent(text.strip(), '  ')}")
    result: dict[str, object] = {
        "bench": "http_auth_overhead",
        "nexus_plugins": plugins,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "typed_routes": args.typed,
        "bare_rps": round(median_rps(results[bare.label]), 1),
        "bare_p99_ms": round(median_latency(results[bare.label], "99"), 3),
        "bare_cpu_us_per_request": round(median_cpu_us(results[bare.label]), 1),
        **{f"nexus_{name}": value for name, value in off.items() if "ratio" not in name},
        **{f"nexus_cached_{name}": value for name, value in on.items() if "ratio" not in name},
        "ratio": off["ratio"],
        "cpu_ratio": off["cpu_ratio"],
        "paired_ratio": off["paired_ratio"],
        "cached_ratio": on["ratio"],
        "cached_cpu_ratio": on["cpu_ratio"],
        "cached_paired_ratio": on["paired_ratio"],
        "target_min_ratio": TARGET_RATIO,
        "meets_target": off["ratio"] >= TARGET_RATIO,
        "min_server_busy_pct": round(min_busy_percent(results), 1),
        "failures": sum(run.failures for runs in results.values() for run in runs),
    }
    print(json.dumps(result))


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--access-log", action="store_true", help="add a side logging access")
    parser.add_argument("--typed", action="store_true", help="annotate both routes' results")
    parser.add_argument(
        "--auth", action="store_true", help="check a JWT on each request, all built-ins enabled"
    )
    args = parser.parse_args()
    if args.auth and args.access_log:
        parser.error("--access-log does not combine with --auth")
    require_wrk()
    if args.auth:
        run_auth(args)
    else:
        run_plain(args)


if __name__ == "__main__":
    main()

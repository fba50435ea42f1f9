"""An instance SIGKILLed mid-request behind nginx, with the shipped deploy/nginx.conf settings.

Three `nexus run` instances run deploy/nexus.yaml (production: PostgreSQL, events on Redis)
with a `ledger` plugin whose routes can be told to hold a request on one chosen instance:
after committing a row, before committing one, or before answering a read. The module's
fixture plays the scenario once: rows and events before, three requests held on instance `b`,
`kill -9` of `b`, then traffic after. Each test asserts one consequence.

nginx runs deploy/nginx.conf itself, with only paths, ports and the listen address changed,
so what these tests prove holds for the shipped upstream settings (`max_fails=1
fail_timeout=5s`, `keepalive 32`, `proxy_buffering off`, nginx's default `proxy_next_upstream
error timeout`). That an unacknowledged event held by a killed instance is handled by a
survivor is proven in tests/cluster/test_cluster.py (the last test); here, that acknowledged
ones are not handled again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from nexus.testing.servers import PostgresServer, free_port, start_redis, wait_for_port
from redis import Redis
from tests.cluster.test_cluster import (
    DEPLOY,
    Instance,
    _create_database,
    _nexus,
    _nginx_binary,
    _require,
    eventually,
    lines,
)

pytestmark = pytest.mark.slow

NAMES = ("a", "b", "c")
DOOMED = "b"
FAIL_TIMEOUT = 5.0  # deploy/nginx.conf: an upstream that failed once is skipped this long
HOLD = 60.0  # seconds a held request waits: far longer than the test, so only the kill ends it

LEDGER_MANIFEST = {
    "name": "ledger",
    "version": "1.0.0",
    "description": "Writes rows and events; can hold a request on one instance",
    "entry": "plugin:Ledger",
    "requires": {"database": ">=1.0"},
    "permissions": [
        "services:use:database",
        "events:publish:ledger.*",
        "events:subscribe:ledger.*",
    ],
}
LEDGER_MIGRATION = """
    import sqlalchemy as sa


    async def upgrade(conn):
        await conn.execute(
            sa.text("CREATE TABLE ledger_rows (key TEXT PRIMARY KEY, instance TEXT NOT NULL)")
        )
"""
LEDGER_CODE = """
    import asyncio
    from pathlib import Path

    import sqlalchemy as sa
    from fastapi import APIRouter
    from pydantic import BaseModel

    from nexus import Plugin
    from nexus.plugins.database import DATABASE

    INSERT = sa.text("INSERT INTO ledger_rows (key, instance) VALUES (:key, :instance)")


    class Settings(BaseModel):
        instance: str
        records: Path


    class Ledger(Plugin):
        Config = Settings

        async def setup(self, ctx):
            me, records = ctx.config.instance, ctx.config.records
            database = ctx.services.get(DATABASE)
            await database.migrate(ctx.name, Path(__file__).parent / "migrations")

            def record(*words):
                # One short O_APPEND write per line: the instances' lines never interleave.
                with (records / "ledger.log").open("a") as file:
                    file.write(" ".join(words) + "\\n")

            async def hold(key, hold_on):
                if hold_on == me:
                    record("holding", key, me)
                    await asyncio.sleep(3600)

            router = APIRouter()

            @router.post("/committed/{key}")
            async def committed(key: str, hold_on: str = ""):
                record("received", key, me)
                async with database.session() as session:
                    await session.execute(INSERT, {"key": key, "instance": me})
                record("committed", key, me)
                event = await ctx.events.publish("ledger.written", {"key": key})
                await hold(key, hold_on)
                return {"key": key, "instance": me, "event": event.id}

            @router.post("/uncommitted/{key}")
            async def uncommitted(key: str, hold_on: str = ""):
                record("received", key, me)
                async with database.session() as session:
                    await session.execute(INSERT, {"key": key, "instance": me})
                    await session.flush()  # sent to PostgreSQL, inside an open transaction
                    await hold(key, hold_on)
                return {"key": key, "instance": me}

            @router.get("/read/{key}")
            async def read(key: str, hold_on: str = ""):
                record("received", key, me)
                await hold(key, hold_on)
                return {"key": key, "instance": me}

            @router.get("/rows")
            async def rows():
                async with database.session() as session:
                    found = await session.execute(sa.text("SELECT key FROM ledger_rows"))
                return sorted(row[0] for row in found)

            ctx.http.include_router(router)

            async def on_written(event):
                record("handled", event.data["key"], event.id, me)

            ctx.events.subscribe("ledger.written", on_written)
"""


def shipped_nginx_conf(root: Path, port: int, upstreams: list[int]) -> str:
    """deploy/nginx.conf with paths under `root`, listening on `port`, proxying to `upstreams`."""
    text = (DEPLOY / "nginx.conf").read_text()
    shipped_ports = re.findall(r"server 127\.0\.0\.1:(\d+) ", text)
    assert len(shipped_ports) == len(upstreams), "deploy/nginx.conf has another upstream count"
    for shipped, ours in zip(shipped_ports, upstreams, strict=True):
        text = text.replace(f"127.0.0.1:{shipped} ", f"127.0.0.1:{ours} ")
    replacements = {
        "/run/": f"{root}/",
        "/var/log/nginx/": f"{root}/",
        "listen 80;": f"listen 127.0.0.1:{port};",
        "http {": "http {\n"
        + "".join(
            f"    {kind}_temp_path {root}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
    }
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    # As root, workers would drop to `nobody`, who cannot enter the test's directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"daemon off;\n{user}{text}"


@dataclass
class Held:
    """A request sent through nginx in a thread, held on the doomed instance."""

    key: str
    future: concurrent.futures.Future[httpx.Response]


@dataclass
class Aftermath:
    """What happened around the kill, for the tests to judge."""

    root: Path
    records: Path
    front: str
    committed_before: set[str]  # rows whose POST answered 200 before the kill
    events_before: dict[str, str]  # event id -> the instance that handled it, acknowledged
    held_committed: tuple[str, httpx.Response]
    held_uncommitted: tuple[str, httpx.Response]
    held_read: tuple[str, httpx.Response]
    reads_after: list[httpx.Response]
    write_after: httpx.Response
    later: list[httpx.Response]  # 12 GETs and a POST once nginx tries the dead instance again
    rows_after: list[str]  # every row, read once everything above is done
    handled_after: list[list[str]]  # "handled" records, once the claim interval has passed

    def received(self, key: str) -> list[str]:
        """The instances that received the request for `key`, in order."""
        return [w[2] for w in lines(self.records / "ledger.log") if w[:2] == ["received", key]]

    def log(self, name: str) -> str:
        """An instance's (or nginx's error) log."""
        return (self.root / name).read_text(errors="replace")


def _pending_entries(redis: Redis) -> int:
    """Entries read but not acknowledged, over every group of the ledger's stream."""
    groups = redis.xinfo_groups("nexus:events:stream:ledger")
    return sum(int(group["pending"]) for group in groups)


def _hold(
    http: httpx.Client, pool: concurrent.futures.Executor, records: Path, method: str, path: str
) -> Held:
    """Send `method path` through nginx until one lands on the doomed instance and is held."""
    for attempt in range(12):
        key = f"{path.rsplit('/', 1)[-1]}-{attempt}"
        future = pool.submit(http.request, method, f"{path}/{key}", params={"hold_on": DOOMED})

        def held(key: str = key, future: Any = future) -> bool:
            return future.done() or any(
                w[:2] == ["holding", key] for w in lines(records / "ledger.log")
            )

        eventually(held, timeout=10, what=f"{method} {path}/{key} held or answered")
        if not future.done():
            return Held(key, future)
        assert future.result().status_code == 200, future.result().text
    pytest.fail(f"nginx never sent {method} {path} to instance {DOOMED}")


@pytest.fixture(scope="module")
def aftermath(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Aftermath]:
    """Three instances behind the shipped nginx; `b` SIGKILLed with three requests held on it."""
    nginx_binary = _require(_nginx_binary)
    root = tmp_path_factory.mktemp("kill")
    records = root / "records"
    records.mkdir()
    for name in ("nexus.yaml", "nexus.production.yaml"):
        (root / name).write_text((DEPLOY / name).read_text())
    plugin = root / "plugins" / "ledger"
    (plugin / "migrations").mkdir(parents=True)
    (plugin / "manifest.json").write_text(json.dumps(LEDGER_MANIFEST))
    (plugin / "plugin.py").write_text(textwrap.dedent(LEDGER_CODE))
    (plugin / "migrations" / "0001_rows.py").write_text(textwrap.dedent(LEDGER_MIGRATION))
    redis_server = _require(start_redis)
    stack = contextlib.ExitStack()
    instances: dict[str, Instance] = {}
    nginx: subprocess.Popen[bytes] | None = None
    http = httpx.Client(timeout=HOLD + 30)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NEXUS")},
            "NEXUS_ENV": "production",
            "NEXUS_PUBLIC_HOST": "127.0.0.1",
            "REDIS_URL": redis_server.url,
            "DATABASE_URL": _create_database(postgres_server),
            "NEXUS__PLUGINS__AUTH__SIGNING_KEY": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=",
            "NEXUS__PLUGINS__ADMIN": '{"enabled": false}',
            "NEXUS__PLUGINS__CLUSTER__HEARTBEAT_INTERVAL": "0.5",
            "NEXUS__EVENTS__REDIS_CLAIM_IDLE": "1",
            "NEXUS__EVENTS__REDIS_BLOCK": "0.5",
            "NEXUS__HTTP__RATE_LIMIT__ENABLED": "false",
            "NEXUS__PLUGINS__LEDGER__RECORDS": str(records),
        }
        config = ["--config", str(root / "nexus.yaml")]
        _nexus(["db", "upgrade", *config], env, root)
        for name in NAMES:
            port = free_port()
            log = stack.enter_context((root / f"nexus-{name}.log").open("wb"))
            process = subprocess.Popen(
                [sys.executable, "-m", "nexus.cli", "run", *config, "--port", str(port)],
                cwd=root,
                env={
                    **env,
                    "NEXUS_PORT": str(port),
                    "NEXUS_DATA_DIR": str(root / f"data-{name}"),
                    "NEXUS__PLUGINS__LEDGER__INSTANCE": name,
                    "NEXUS__PLUGINS__CLUSTER__INSTANCE_ID": name,
                    "NEXUS__PLUGINS__SCHEDULER__INSTANCE_ID": name,
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            instances[name] = Instance(name, port, process)
        for instance in instances.values():
            wait_for_port(instance.port, timeout=60, process=instance.process)

            def ready(instance: Instance = instance) -> bool:
                return http.get(f"{instance.url}/readyz").status_code == 200

            eventually(ready, timeout=30, what=f"{instance.name} ready")
        nginx_port = free_port()
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / kind).mkdir()
        conf = root / "nginx.conf"
        conf.write_text(shipped_nginx_conf(root, nginx_port, [i.port for i in instances.values()]))
        nginx = subprocess.Popen(
            [nginx_binary, "-c", str(conf), "-p", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # it logs to nexus-error.log
        )
        wait_for_port(nginx_port, process=nginx)
        front = f"http://127.0.0.1:{nginx_port}/api/ledger"
        yield _play(root, records, front, http, pool, instances, Redis.from_url(redis_server.url))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        http.close()
        for instance in instances.values():
            instance.stop()
        if nginx is not None:
            nginx.terminate()  # SIGTERM: the master takes its workers down with it
            nginx.wait(timeout=10)
        redis_server.stop()
        stack.close()


def _play(
    root: Path,
    records: Path,
    front: str,
    http: httpx.Client,
    pool: concurrent.futures.Executor,
    instances: dict[str, Instance],
    redis: Redis,
) -> Aftermath:

    def handled() -> list[list[str]]:
        return [words for words in lines(records / "ledger.log") if words[0] == "handled"]

    committed_before: set[str] = set()
    # Rows and events before the kill, until the doomed instance has handled some events.
    for n in range(40):
        answer = http.post(f"{front}/committed/before-{n}")
        assert answer.status_code == 200, answer.text
        committed_before.add(f"before-{n}")
        if n >= 5 and any(w[3] == DOOMED for w in handled()):
            break
    eventually(
        lambda: {w[1] for w in handled()} >= committed_before, timeout=10, what="events handled"
    )
    eventually(lambda: _pending_entries(redis) == 0, timeout=10, what="every event acknowledged")
    events_before = {w[2]: w[3] for w in handled()}
    assert DOOMED in events_before.values()

    held = {
        name: _hold(http, pool, records, method, f"{front}/{name}")
        for name, method in (("committed", "POST"), ("uncommitted", "POST"), ("read", "GET"))
    }
    doomed = instances[DOOMED]
    os.kill(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(timeout=10)
    answers = {name: h.future.result(timeout=30) for name, h in held.items()}

    reads_after = [http.get(f"{front}/read/after-{n}") for n in range(12)]
    write_after = http.post(f"{front}/committed/after-write")
    # Past the shipped fail_timeout (5 s), nginx tries the dead instance again; also far past
    # the claim interval (1 s), so a redelivered event would have been handled by now.
    # nginx compares whole seconds (`now - checked <= fail_timeout`): wait a second more.
    time.sleep(FAIL_TIMEOUT + 1.5)
    later = [http.get(f"{front}/read/later-{n}") for n in range(12)]
    later.append(http.post(f"{front}/committed/later-write"))
    return Aftermath(
        root=root,
        records=records,
        front=front,
        committed_before=committed_before,
        events_before=events_before,
        held_committed=(held["committed"].key, answers["committed"]),
        held_uncommitted=(held["uncommitted"].key, answers["uncommitted"]),
        held_read=(held["read"].key, answers["read"]),
        reads_after=reads_after,
        write_after=write_after,
        later=later,
        rows_after=http.get(f"{front}/rows").json(),
        handled_after=handled(),
    )


def test_a_post_in_flight_on_the_killed_instance_gets_nginxs_502_page(
    aftermath: Aftermath,
) -> None:
    """Both held POSTs end in nginx's own 502 Bad Gateway HTML page, not a problem document."""
    for _, answer in (aftermath.held_committed, aftermath.held_uncommitted):
        assert answer.status_code == 502
        assert answer.headers["content-type"] == "text/html"
        assert "<title>502 Bad Gateway</title>" in answer.text


def test_a_post_in_flight_is_not_retried_on_another_instance(aftermath: Aftermath) -> None:
    """nginx passes no non-idempotent request on after sending it: the POSTs reached `b` only."""
    for key, _ in (aftermath.held_committed, aftermath.held_uncommitted):
        assert aftermath.received(key) == [DOOMED]


def test_a_get_in_flight_is_retried_on_a_survivor(aftermath: Aftermath) -> None:
    """The held GET is passed to the next instance (proxy_next_upstream error): the user gets 200."""
    key, answer = aftermath.held_read
    assert answer.status_code == 200, answer.text
    assert answer.json()["instance"] != DOOMED
    assert aftermath.received(key) == [DOOMED, answer.json()["instance"]]


def test_requests_after_the_kill_are_all_served_by_survivors(aftermath: Aftermath) -> None:
    """Every GET and a POST sent after the kill answer 200 from a survivor."""
    assert [r.status_code for r in aftermath.reads_after] == [200] * len(aftermath.reads_after)
    served_by = {r.json()["instance"] for r in aftermath.reads_after}
    assert served_by == set(NAMES) - {DOOMED}
    assert aftermath.write_after.status_code == 200, aftermath.write_after.text
    assert aftermath.write_after.json()["instance"] != DOOMED
    assert aftermath.received("after-write") == [aftermath.write_after.json()["instance"]]


def test_committed_rows_survive_and_the_uncommitted_one_is_gone(aftermath: Aftermath) -> None:
    """Rows committed before the kill, the held one included, are there; the row whose
    transaction was open when `b` died is absent."""
    rows = set(aftermath.rows_after)
    assert aftermath.committed_before <= rows
    assert aftermath.held_committed[0] in rows  # committed, though its answer was a 502
    assert aftermath.held_uncommitted[0] not in rows
    assert "after-write" in rows


def test_acknowledged_events_are_not_handled_again_and_none_is_lost(aftermath: Aftermath) -> None:
    """Events handled and acknowledged before the kill, some by `b`, are handled once each; the
    event of the held committed request and the one after the kill are handled too."""
    handled = Counter(words[2] for words in aftermath.handled_after)
    assert {event_id: handled[event_id] for event_id in aftermath.events_before} == dict.fromkeys(
        aftermath.events_before, 1
    )
    keys = {words[1] for words in aftermath.handled_after}
    assert {aftermath.held_committed[0], "after-write"} <= keys


def test_after_fail_timeout_nginx_tries_the_dead_instance_and_passes_requests_on(
    aftermath: Aftermath,
) -> None:
    """Once fail_timeout has passed, requests nginx sends to `b` find it refusing connections
    and go to a survivor: GETs and a POST (never sent to `b`) all answer 200."""
    assert [r.status_code for r in aftermath.later] == [200] * len(aftermath.later)
    assert DOOMED not in {r.json()["instance"] for r in aftermath.later}
    assert "later-write" in aftermath.rows_after
    refused = "connect() failed (111: Connection refused) while connecting to upstream"
    assert refused in aftermath.log("nexus-error.log")


def test_the_survivors_log_no_errors_and_nginx_logs_the_lost_upstream(aftermath: Aftermath) -> None:
    """The survivors log the retried GET as a 200, and no error or traceback; nginx's error log
    names the upstream that closed mid-request, then disables it for fail_timeout."""
    for name in set(NAMES) - {DOOMED}:
        log = aftermath.log(f"nexus-{name}.log")
        assert "Traceback" not in log
        assert "ERROR" not in log
    key, answer = aftermath.held_read
    access = [
        json.loads(line[line.index("{") :])
        for line in aftermath.log(f"nexus-{answer.json()['instance']}.log").splitlines()
        if line.startswith("INFO:     nexus.access: ") and f"/read/{key}" in line
    ]
    assert [(entry["method"], entry["status"]) for entry in access] == [("GET", 200)]
    errors = aftermath.log("nexus-error.log")
    for request in (f"GET /api/ledger/read/{key}", "POST /api/ledger/committed/"):
        closed = [
            line
            for line in errors.splitlines()
            if "upstream prematurely closed connection while reading response header" in line
            and request in line
        ]
        assert closed, errors
    assert "upstream server temporarily disabled" in errors

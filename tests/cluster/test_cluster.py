"""Three `nexus run` instances behind nginx, sharing PostgreSQL and Redis: the cluster as deployed.

The instances run `deploy/nexus.yaml` and `deploy/nexus.production.yaml` as shipped; what the
test needs on top (ports, short intervals, a small rate limit, the probe plugin's record
directory) comes from environment variables, the way a deployment sets them. The probe plugin
appends what it handles to files in one record directory shared by the instances, so the test
can see which instance handled which event, and how often.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from nexus.testing.servers import (
    PostgresServer,
    RedisServer,
    ServerUnavailable,
    free_port,
    services_required,
    start_redis,
    wait_for_port,
)

pytestmark = pytest.mark.slow

_T = TypeVar("_T")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAMES = ("a", "b", "c")
PASSWORD = "cluster admin password"
SLOW_SECONDS = 3.0  # how long the slow handler holds an event the first time it gets it

PROBE_MANIFEST = {
    "name": "probe",
    "version": "1.0.0",
    "description": "Publishes events on request and records what it handles",
    "entry": "plugin:Probe",
    "requires": {"scheduler": ">=1.0"},
    "permissions": [
        "events:publish:probe.*",
        "events:publish:slow.*",
        "events:subscribe:probe.*",
        "events:subscribe:slow.*",
        "services:use:scheduler",
    ],
}
PROBE_CODE = """
    import asyncio
    from pathlib import Path

    from fastapi import APIRouter
    from pydantic import BaseModel

    from nexus import Plugin
    from nexus.plugins.scheduler import SCHEDULER, current_run


    class Settings(BaseModel):
        instance: str
        records: Path
        slow_seconds: float


    class Probe(Plugin):
        Config = Settings

        async def setup(self, ctx):
            me, records = ctx.config.instance, ctx.config.records

            def record(log, *words):
                # One short O_APPEND write per line: the instances' lines never interleave.
                with (records / f"{log}.log").open("a") as file:
                    file.write(" ".join(words) + "\\n")

            router = APIRouter()

            @router.get("/whoami")
            async def whoami():
                return {"instance": me}

            @router.post("/publish/{topic}")
            async def publish(topic: str, count: int = 1):
                sent = await asyncio.gather(
                    *(ctx.events.publish(topic, {"n": n}) for n in range(count))
                )
                return {"instance": me, "ids": [event.id for event in sent]}

            ctx.http.include_router(router)

            async def on_shared(event):
                record("shared", event.id, me)

            async def on_broadcast(event):
                record(f"broadcast-{me}", event.id)

            async def on_slow(event):
                record("slow-start", event.id, me, str(event.attempt))
                if event.attempt == 1:
                    await asyncio.sleep(ctx.config.slow_seconds)
                record("slow-done", event.id, me, str(event.attempt))

            ctx.events.subscribe("probe.*", on_shared)
            ctx.events.subscribe("probe.*", on_broadcast, mode="broadcast")
            ctx.events.subscribe("slow.*", on_slow)

            async def tick():
                record("tick", current_run().due.isoformat(), me)

            ctx.services.get(SCHEDULER).every(1, tick, name="tick")
"""
NOTES_MANIFEST = {
    "name": "notes",
    "version": "1.0.0",
    "description": "A plain route, to disable across the cluster",
    "entry": "plugin:Notes",
}
NOTES_CODE = """
    from fastapi import APIRouter

    from nexus import Plugin


    class Notes(Plugin):
        async def setup(self, ctx):
            router = APIRouter()

            @router.get("/ping")
            async def ping():
                return {"pong": True}

            ctx.http.include_router(router)
"""
NGINX_CONF = """
{user}daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream nexus {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://nexus;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""

_addresses = itertools.count(1)


def client(address: str | None = None) -> dict[str, str]:
    """Headers of a client at a fresh (or the given) address, as nginx's X-Forwarded-For shows it.

    The instances trust 127.0.0.1 as a proxy, so each test is a client of its own to the
    rate limiter (addresses from 198.18.0.0/15 only ever appear in this header).
    """
    if address is None:
        n = next(_addresses)
        address = f"198.18.{n // 250}.{n % 250 + 1}"
    return {"X-Forwarded-For": address}


def eventually(check: Callable[[], _T | None], *, timeout: float, what: str) -> _T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            found = check()
            if found:
                return found
            last = found
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen within {timeout:g} s (last: {last!r})")


def lines(path: Path) -> list[list[str]]:
    """The records in a probe log file, split into words."""
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line]


@dataclass
class Instance:
    """One `nexus run` process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """Its base URL (direct, not through nginx)."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited after 10 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Cluster:
    """The running deployment: instances, nginx in front, Redis, and the probe's records."""

    root: Path
    records: Path
    redis: RedisServer
    nginx_port: int
    instances: dict[str, Instance] = field(default_factory=dict)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))
    token: str | None = None

    @property
    def front(self) -> str:
        """nginx's base URL."""
        return f"http://127.0.0.1:{self.nginx_port}"

    def live(self) -> list[Instance]:
        """The instances whose process still runs."""
        return [i for i in self.instances.values() if i.process.poll() is None]

    def ready(self, instance: Instance) -> bool:
        """Whether the instance's /readyz answers 200."""
        return self.http.get(f"{instance.url}/readyz").status_code == 200

    def wait_for_status(
        self, instance: Instance, path: str, status: int, *, timeout: float
    ) -> httpx.Response:
        """Poll GET `path` on `instance` (as fresh clients) until it answers `status`."""

        def check() -> httpx.Response | None:
            answer = self.http.get(f"{instance.url}{path}", headers=client())
            return answer if answer.status_code == status else None

        return eventually(
            check, timeout=timeout, what=f"{path} answering {status} on {instance.name}"
        )

    def login(self) -> str:
        """An access token for the admin, signed in through nginx."""
        if self.token is None:
            answer = self.http.post(
                f"{self.front}/api/auth/token",
                data={"grant_type": "password", "username": "root", "password": PASSWORD},
                headers=client(),
            )
            assert answer.status_code == 200, answer.text
            self.token = str(answer.json()["access_token"])
        return self.token


def _require(start: Callable[[], _T]) -> _T:
    try:
        return start()
    except ServerUnavailable as exc:
        if services_required():
            pytest.fail(f"{exc}; NEXUS_REQUIRE_SERVICES=1 makes this a failure")
        pytest.skip(str(exc))


def _nginx_binary() -> str:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None
    )
    if binary is None:
        raise ServerUnavailable("nginx is not installed (Debian package nginx)")
    return binary


def _create_database(server: PostgresServer) -> str:
    """A fresh database on the session's PostgreSQL, so no other test's rows are in the way."""
    import asyncio

    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

    name = f"cluster_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        connection = await asyncpg.connect(
            host="127.0.0.1", port=server.port, user=server.user, database="postgres"
        )
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    return f"postgresql+asyncpg://{server.user}@127.0.0.1:{server.port}/{name}"


def _write_app(root: Path) -> None:
    shutil.copy(DEPLOY / "nexus.yaml", root / "nexus.yaml")
    shutil.copy(DEPLOY / "nexus.production.yaml", root / "nexus.production.yaml")
    for name, manifest, code in (
        ("probe", PROBE_MANIFEST, PROBE_CODE),
        ("notes", NOTES_MANIFEST, NOTES_CODE),
    ):
        directory = root / "plugins" / name
        directory.mkdir(parents=True)
        (directory / "manifest.json").write_text(json.dumps(manifest))
        (directory / "plugin.py").write_text(textwrap.dedent(code))


def _environment(redis: RedisServer, database_url: str, records: Path) -> dict[str, str]:
    signing_key = base64.b64encode(secrets.token_bytes(32)).decode()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEXUS__")},
        "NEXUS_ENV": "production",
        "NEXUS_PUBLIC_HOST": "127.0.0.1",
        "REDIS_URL": redis.url,
        "DATABASE_URL": database_url,
        "NEXUS__PLUGINS__AUTH__SIGNING_KEY": signing_key,
        # Cheap password hashes: the test signs in, it does not measure argon2.
        "NEXUS__PLUGINS__AUTH__PASSWORD_HASHING": json.dumps(
            {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
        ),
        "NEXUS__PLUGINS__ADMIN": '{"enabled": false}',
        # Short intervals, so convergence, claims and outage detection fit in a test.
        "NEXUS__PLUGINS__CLUSTER__HEARTBEAT_INTERVAL": "0.5",
        "NEXUS__EVENTS__REDIS_CLAIM_IDLE": "1",
        "NEXUS__EVENTS__REDIS_TIMEOUT": "0.5",
        "NEXUS__EVENTS__REDIS_BLOCK": "0.5",
        # A budget small enough to run out: 12 requests, then one every 10 s.
        "NEXUS__HTTP__RATE_LIMIT__BURST": "12",
        "NEXUS__HTTP__RATE_LIMIT__RATE": "0.1",
        "NEXUS__PLUGINS__PROBE__RECORDS": str(records),
        "NEXUS__PLUGINS__PROBE__SLOW_SECONDS": str(SLOW_SECONDS),
    }


def _nexus(args: list[str], env: dict[str, str], cwd: Path, **options: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nexus.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **options,
    )
    assert done.returncode == 0, f"nexus {' '.join(args)} failed: {done.stderr}"


def _start_nginx(root: Path, ports: list[int]) -> tuple[int, subprocess.Popen[bytes]]:
    binary = _nginx_binary()
    port = free_port()
    for directory in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / directory).mkdir()
    conf = root / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            # As root, workers would drop to `nobody`, who cannot enter the test's directory.
            user="user root;\n" if os.geteuid() == 0 else "",
            root=root,
            port=port,
            servers="\n".join(f"        server 127.0.0.1:{p};" for p in ports),
        )
    )
    process = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # it logs to nginx-error.log
    )
    try:
        wait_for_port(port, process=process)
    except BaseException:
        process.terminate()  # not SIGKILL: the master takes its workers down with it
        process.wait(timeout=10)
        raise
    return port, process


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Redis, PostgreSQL, three `nexus run` instances and nginx in front; all killed after."""
    _require(_nginx_binary)
    root = tmp_path_factory.mktemp("cluster")
    records = root / "records"
    records.mkdir()
    _write_app(root)
    redis = _require(start_redis)
    processes: list[subprocess.Popen[bytes]] = []
    state = Cluster(root, records, redis, nginx_port=0)
    stack = contextlib.ExitStack()
    try:
        env = _environment(redis, _create_database(postgres_server), records)
        config = ["--config", str(root / "nexus.yaml")]
        _nexus(["db", "upgrade", *config], env, root)
        _nexus(
            ["users", "create", "root", "--admin", "--password-stdin", *config],
            env,
            root,
            input=PASSWORD + "\n",
        )
        for name in NAMES:
            port = free_port()
            log = stack.enter_context((root / f"nexus-{name}.log").open("wb"))
            instance_env = {
                **env,
                "NEXUS_PORT": str(port),
                "NEXUS_DATA_DIR": str(root / f"data-{name}"),
                "NEXUS__PLUGINS__PROBE__INSTANCE": name,
                "NEXUS__PLUGINS__CLUSTER__INSTANCE_ID": name,
                "NEXUS__PLUGINS__SCHEDULER__INSTANCE_ID": name,
            }
            process = subprocess.Popen(
                [sys.executable, "-m", "nexus.cli", "run", *config, "--port", str(port)],
                cwd=root,
                env=instance_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            processes.append(process)
            state.instances[name] = Instance(name, port, process)
        for instance in state.instances.values():
            wait_for_port(instance.port, timeout=60, process=instance.process)
            eventually(partial(state.ready, instance), timeout=30, what=f"{instance.name} ready")
        state.nginx_port, nginx = _start_nginx(root, [i.port for i in state.instances.values()])
        processes.append(nginx)
        yield state
    finally:
        state.http.close()
        for instance in state.instances.values():
            instance.stop()
        for process in processes:
            # SIGTERM first: a SIGKILLed nginx master would leave its workers running.
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        state.redis.stop()
        stack.close()


def test_an_event_is_handled_once_per_shared_subscriber_and_on_every_instance_broadcast(
    cluster: Cluster,
) -> None:
    """Published on one instance: the shared handler runs once cluster-wide, broadcast on all."""
    answer = cluster.http.post(
        f"{cluster.front}/api/probe/publish/probe.ping", params={"count": 5}, headers=client()
    )
    assert answer.status_code == 200, answer.text
    ids = set(answer.json()["ids"])
    assert len(ids) == 5

    def handled() -> bool:
        shared = {words[0] for words in lines(cluster.records / "shared.log")}
        broadcast = [
            {words[0] for words in lines(cluster.records / f"broadcast-{name}.log")}
            for name in NAMES
        ]
        return ids <= shared and all(ids <= seen for seen in broadcast)

    eventually(handled, timeout=10, what="every delivery of the 5 events")
    time.sleep(1.5)  # past the claim interval: a second delivery would have arrived by now
    shared = Counter(words[0] for words in lines(cluster.records / "shared.log"))
    assert {event_id: shared[event_id] for event_id in ids} == dict.fromkeys(ids, 1)
    for name in NAMES:
        seen = Counter(words[0] for words in lines(cluster.records / f"broadcast-{name}.log"))
        assert {event_id: seen[event_id] for event_id in ids} == dict.fromkeys(ids, 1), name


def test_the_rate_limit_is_one_budget_across_instances(cluster: Cluster) -> None:
    """36 requests spread over three instances by nginx: only the shared burst of 12 passes."""
    me = client()
    answers = [cluster.http.get(f"{cluster.front}/api/probe/whoami", headers=me) for _ in range(36)]
    passed = [a for a in answers if a.status_code == 200]
    limited = [a for a in answers if a.status_code == 429]
    # Per-instance buckets would pass all 36 (12 on each instance). At 0.1 request/s, at most
    # one more is refilled while the test runs.
    assert 12 <= len(passed) <= 13
    assert len(passed) + len(limited) == 36
    assert {a.json()["instance"] for a in passed} == set(NAMES)  # nginx did spread them
    assert limited[0].headers["content-type"] == "application/problem+json"
    assert int(limited[0].headers["retry-after"]) >= 1
    other = cluster.http.get(f"{cluster.front}/api/probe/whoami", headers=client())
    assert other.status_code == 200  # another client's budget is untouched


def test_a_token_issued_by_one_instance_is_accepted_by_every_instance(cluster: Cluster) -> None:
    """A token from a login through nginx works on each instance called directly."""
    token = cluster.login()
    for instance in cluster.instances.values():
        me = cluster.http.get(
            f"{instance.url}/api/auth/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.status_code == 200, (instance.name, me.text)
        assert me.json()["username"] == "root"
    forged = cluster.http.get(
        f"{cluster.instances['b'].url}/api/auth/me", headers={"Authorization": f"Bearer {token}x"}
    )
    assert forged.status_code == 401


def test_disabling_a_plugin_on_one_instance_removes_its_routes_on_all(cluster: Cluster) -> None:
    """POST /api/cluster/plugins/notes/disable on one instance: /api/notes 404s on all three."""
    auth = {"Authorization": f"Bearer {cluster.login()}"}
    for instance in cluster.instances.values():
        assert cluster.http.get(f"{instance.url}/api/notes/ping").status_code == 200
    first = cluster.instances["a"]
    answer = cluster.http.post(f"{first.url}/api/cluster/plugins/notes/disable", headers=auth)
    assert answer.status_code == 202, answer.text
    try:
        for instance in cluster.instances.values():
            cluster.wait_for_status(instance, "/api/notes/ping", 404, timeout=5)
    finally:
        enabled = cluster.http.post(f"{first.url}/api/cluster/plugins/notes/enable", headers=auth)
        assert enabled.status_code == 202, enabled.text
    for instance in cluster.instances.values():
        cluster.wait_for_status(instance, "/api/notes/ping", 200, timeout=5)


def test_a_scheduled_job_runs_once_per_period_across_the_cluster(cluster: Cluster) -> None:
    """The 1 s job of three instances: each due time runs on exactly one of them."""
    log = cluster.records / "tick.log"
    before = len(lines(log))
    eventually(lambda: len(lines(log)) >= before + 4, timeout=10, what="four more runs")
    time.sleep(1.5)  # a due time's other runs, if any, would be recorded by now
    runs = lines(log)
    per_due = Counter(due for due, _ in runs)
    assert len(per_due) >= 4
    assert max(per_due.values()) == 1, per_due.most_common(3)


def test_redis_down_fails_publishes_and_readiness_and_the_cluster_recovers(
    cluster: Cluster,
) -> None:
    """Redis stopped: publish fails, /readyz 503 everywhere; restarted on its port: all recovers."""
    port = cluster.redis.port
    cluster.redis.stop()
    try:
        failed = cluster.http.post(
            f"{cluster.front}/api/probe/publish/probe.ping", headers=client()
        )
        assert failed.status_code == 503, failed.text
        assert failed.headers["content-type"] == "application/problem+json"
        assert failed.headers["retry-after"] == "5"
        assert "event transport is unavailable" in failed.json()["detail"]
        assert "redis://" not in failed.text  # production hides where the server is
        for instance in cluster.instances.values():
            readyz = cluster.wait_for_status(instance, "/readyz", 503, timeout=10)
            body = readyz.json()
            assert body["status"] == "not ready"
            assert body["events"]["healthy"] is False
            assert "unreachable" in body["events"]["detail"]
    finally:
        cluster.redis = start_redis(port)
    for instance in cluster.instances.values():
        cluster.wait_for_status(instance, "/readyz", 200, timeout=20)
    answer = cluster.http.post(
        f"{cluster.front}/api/probe/publish/probe.ping", params={"count": 3}, headers=client()
    )
    assert answer.status_code == 200, answer.text
    ids = set(answer.json()["ids"])

    def handled() -> bool:
        shared = {words[0] for words in lines(cluster.records / "shared.log")}
        return ids <= shared and all(
            ids <= {words[0] for words in lines(cluster.records / f"broadcast-{name}.log")}
            for name in NAMES
        )

    eventually(handled, timeout=10, what="events handled after the restart")


def test_events_held_by_an_instance_killed_with_sigkill_are_handled_by_survivors(
    cluster: Cluster,
) -> None:
    """SIGKILL mid-handling: every event the dead instance held is handled by another one."""
    answer = cluster.http.post(
        f"{cluster.instances['a'].url}/api/probe/publish/slow.work",
        params={"count": 10},
        headers=client(),
    )
    assert answer.status_code == 200, answer.text
    ids = set(answer.json()["ids"])
    started = eventually(
        lambda: lines(cluster.records / "slow-start.log"),
        timeout=10,
        what="a handler starting on the burst",
    )
    doomed = cluster.instances[started[0][1]]
    os.kill(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(timeout=10)
    done_by_doomed = {w[0] for w in lines(cluster.records / "slow-done.log") if w[1] == doomed.name}
    assert not ids <= done_by_doomed  # it died holding unfinished events

    def all_done() -> bool:
        return ids <= {words[0] for words in lines(cluster.records / "slow-done.log")}

    eventually(all_done, timeout=30, what="every event of the burst handled")
    done = lines(cluster.records / "slow-done.log")
    survivors = {name for _, name, _ in done if name != doomed.name}
    assert survivors  # the survivors finished what the dead one held
    redelivered = {event_id for event_id, name, attempt in done if int(attempt) > 1}
    assert ids - done_by_doomed <= {w[0] for w in done if w[1] != doomed.name}
    assert redelivered  # taken over from a pending entry, not a fresh delivery

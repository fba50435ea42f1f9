"""Multiprocess metrics: worker processes share a directory, and any of them reports the totals."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from nexus.plugins.monitoring.multiprocess import ENV_VAR, RUN_FILE, prepare_directory

# A worker: the app with monitoring and one plugin, configured like `nexus run --workers 2`.
# It answers `count` requests through the real middleware stack, then prints /metrics if asked.
WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path

    from fastapi import APIRouter

    import nexus.plugins.monitoring
    from nexus import Plugin
    from nexus.kernel import inline_plugin
    from nexus.plugins.monitoring import MonitoringPlugin
    from nexus.testing import create_test_app, serve


    class Items(Plugin):
        manifest = {"name": "items", "version": "1.0", "permissions": ["events:publish:item.*"]}

        async def setup(self, ctx):
            router = APIRouter()

            @router.get("/items/{item_id}")
            async def item(item_id: int) -> dict[str, int]:
                await ctx.events.publish("item.read", {"id": item_id})
                return {"id": item_id}

            ctx.http.include_router(router)


    async def main(data_dir: str, count: int, scrape: bool) -> None:
        package = Path(nexus.plugins.monitoring.__file__).parent
        manifest = json.loads((package / "manifest.json").read_text())
        app = create_test_app(
            plugins=[inline_plugin(manifest, MonitoringPlugin), Items()],
            config={"data_dir": data_dir, "server": {"workers": 2}},
        )
        async with serve(app) as client:
            for i in range(count):
                assert (await client.get(f"/api/items/items/{i}")).status_code == 200
            if scrape:
                print((await client.get("/metrics")).text)


    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "scrape"))
    """
)


def worker(
    script: Path, data_dir: Path, count: int, *, scrape: bool = False
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    args = [sys.executable, str(script), str(data_dir), str(count), "scrape" if scrape else "-"]
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out


async def test_any_worker_reports_the_totals_of_all_workers(tmp_path: Path) -> None:
    """Two worker processes record requests; a third process's /metrics shows their sum."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    data_dir = tmp_path / "data"
    writers = [worker(script, data_dir, 3), worker(script, data_dir, 5)]
    for process in writers:
        finish(process)
    text = finish(worker(script, data_dir, 0, scrape=True))

    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    route = "/api/items/items/{item_id}"
    requests = frozenset(
        {"plugin": "items", "route": route, "method": "GET", "status": "200"}.items()
    )
    assert samples["nexus_http_requests_total", requests] == 8
    durations = frozenset({"plugin": "items", "route": route, "method": "GET"}.items())
    assert samples["nexus_http_request_duration_seconds_count", durations] == 8
    published = frozenset({"topic": "item.read", "outcome": "published"}.items())
    assert samples["nexus_events_total", published] == 8
    # The reader's own view of plugin states comes along.
    assert (
        samples["nexus_plugin_state", frozenset({"plugin": "items", "state": "active"}.items())]
        == 1
    )
    # One counter file per writer: the totals really came from two processes.
    assert len(list((data_dir / "metrics").glob("counter_*.db"))) == 2


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_files_of_an_earlier_run_are_removed(tmp_path: Path) -> None:
    """Dead pids' files go when a new run starts; in the same run only their live gauges go."""
    gone, old_master, mine = dead_pid(), dead_pid(), os.getpid()
    names = [f"counter_{gone}.db", f"gauge_livesum_{gone}.db", f"counter_{mine}.db"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / RUN_FILE).write_text(str(old_master))

    # A worker replaced during the run keeps its counts.
    assert prepare_directory(tmp_path, run_id=old_master) == [f"gauge_livesum_{gone}.db"]
    assert (tmp_path / f"counter_{gone}.db").exists()

    # A new server run starts from zero, without touching live processes' files.
    assert prepare_directory(tmp_path, run_id=mine) == [f"counter_{gone}.db"]
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [f"counter_{mine}.db"]
    assert (tmp_path / RUN_FILE).read_text() == str(mine)

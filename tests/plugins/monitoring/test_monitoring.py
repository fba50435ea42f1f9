"""The monitoring plugin: /metrics with request, plugin-state and event metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from prometheus_client.parser import text_string_to_metric_families

import nexus.plugins.monitoring
from nexus import NexusError, Plugin, PluginContext
from nexus.kernel import PluginSource, inline_plugin
from nexus.plugins.monitoring import MonitoringPlugin
from nexus.plugins.monitoring.multiprocess import ENV_VAR, resolve_directory
from nexus.testing import create_test_app, serve

MANIFEST = json.loads(
    (Path(nexus.plugins.monitoring.__file__).parent / "manifest.json").read_text()
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def monitoring() -> PluginSource:
    """The built-in monitoring plugin as an inline plugin with its real manifest."""
    return inline_plugin(MANIFEST, MonitoringPlugin)


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


class Notes(Plugin):
    """Serves /api/notes/notes/{note_id}, the same router again under /v2, and publishes."""

    manifest = {"name": "notes", "version": "1.0", "permissions": ["events:publish:note.*"]}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.get("/notes/{note_id}")
        async def read(note_id: int) -> dict[str, int]:
            await ctx.events.publish_and_wait("note.read", {"id": note_id})
            return {"id": note_id}

        ctx.http.include_router(router)
        ctx.http.include_router(router, prefix="/v2")


class Tasks(Plugin):
    """Serves POST /api/tasks/tasks; its note.read handler always fails."""

    manifest = {"name": "tasks", "version": "1.0", "permissions": ["events:subscribe:note.*"]}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.post("/tasks", status_code=201)
        async def create() -> dict[str, bool]:
            return {"created": True}

        async def fail(event: Any) -> None:
            raise RuntimeError("tasks cannot handle notes")

        ctx.http.include_router(router)
        ctx.events.subscribe("note.read", fail)


def app_with_plugins() -> Any:
    return create_test_app(
        plugins=[monitoring(), Notes(), Tasks()],
        config={"events": {"retries": 0, "retry_delay": 0}},
    )


async def test_requests_are_counted_per_plugin_and_route_template() -> None:
    """Requests to two plugins appear under their route templates, never their raw paths."""
    app = app_with_plugins()
    async with serve(app) as client:
        for path in ("/api/notes/notes/1", "/api/notes/notes/2", "/api/notes/v2/notes/3"):
            assert (await client.get(path)).status_code == 200
        assert (await client.post("/api/tasks/tasks")).status_code == 201
        assert (await client.get("/api/notes/nowhere")).status_code == 404
        assert (await client.get("/api/ghost/anything")).status_code == 404
        assert (await client.request("BREW", "/api/notes/notes/1")).status_code == 405
        response = await client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        first = parse(response.text)
        second = parse((await client.get("/metrics")).text)

    total = "nexus_http_requests_total"
    notes = "/api/notes/notes/{note_id}"
    assert first[total, labels(plugin="notes", route=notes, method="GET", status="200")] == 2
    assert (
        first[
            total,
            labels(
                plugin="notes", route="/api/notes/v2/notes/{note_id}", method="GET", status="200"
            ),
        ]
        == 1
    )
    assert (
        first[total, labels(plugin="tasks", route="/api/tasks/tasks", method="POST", status="201")]
        == 1
    )
    assert first[total, labels(plugin="notes", route="unmatched", method="GET", status="404")] == 1
    assert (
        first[total, labels(plugin="platform", route="unmatched", method="GET", status="404")] == 1
    )
    assert first[total, labels(plugin="notes", route=notes, method="OTHER", status="405")] == 1
    count = "nexus_http_request_duration_seconds_count"
    assert first[count, labels(plugin="notes", route=notes, method="GET")] == 2
    routes = {dict(pairs).get("route") for name, pairs in first if name.startswith("nexus_http")}
    assert not any(route and route[-1].isdigit() for route in routes)  # no raw paths
    assert "/metrics" not in routes
    # Scraping is not itself counted: the second scrape sees the same request totals.
    assert {k: v for k, v in second.items() if k[0] == total} == {
        k: v for k, v in first.items() if k[0] == total
    }


async def test_plugin_state_series_follow_a_disable() -> None:
    """nexus_plugin_state moves a plugin from active to disabled; build info names the version."""
    app = app_with_plugins()
    async with serve(app) as client:
        before = parse((await client.get("/metrics")).text)
        await app.kernel.plugins.disable("tasks")
        after = parse((await client.get("/metrics")).text)

    state = "nexus_plugin_state"
    assert before[state, labels(plugin="tasks", state="active")] == 1
    assert before[state, labels(plugin="tasks", state="disabled")] == 0
    assert after[state, labels(plugin="tasks", state="active")] == 0
    assert after[state, labels(plugin="tasks", state="disabled")] == 1
    assert after[state, labels(plugin="notes", state="active")] == 1
    assert before["nexus_plugin_boot_seconds", labels(plugin="tasks")] > 0
    assert after["nexus_build_info", labels(version=nexus.__version__)] == 1
    assert after["process_resident_memory_bytes", labels()] > 0


async def test_event_counters_and_dead_letters_come_from_the_bus() -> None:
    """Published, delivered, failed and dead-lettered events are exported per topic."""
    app = app_with_plugins()
    async with serve(app) as client:
        for note_id in (1, 2, 3):
            await client.get(f"/api/notes/notes/{note_id}")
        samples = parse((await client.get("/metrics")).text)

    events = "nexus_events_total"
    assert samples[events, labels(topic="note.read", outcome="published")] == 3
    assert samples[events, labels(topic="note.read", outcome="failed")] == 3
    assert samples[events, labels(topic="note.read", outcome="dead_lettered")] == 3
    assert samples[events, labels(topic="note.read", outcome="delivered")] == 0
    assert samples["nexus_event_dead_letters", labels()] == 3


def test_multiprocess_directory_is_chosen_from_env_config_or_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Env var, then config (relative to data_dir), then <data_dir>/metrics for workers > 1."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_directory(None, workers=1, data_dir=tmp_path) is None
    assert resolve_directory(None, workers=4, data_dir=tmp_path) == tmp_path / "metrics"
    assert resolve_directory(Path("m"), workers=1, data_dir=tmp_path) == tmp_path / "m"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert resolve_directory(None, workers=4, data_dir=tmp_path) == tmp_path / "env"
    with pytest.raises(NexusError, match="Set only one of them"):
        resolve_directory(Path("other"), workers=1, data_dir=tmp_path)


async def test_requests_to_a_restarted_plugin_keep_their_labels() -> None:
    """After a plugin is disabled and enabled again, its new routes are counted as before."""
    app = app_with_plugins()
    async with serve(app) as client:
        await client.get("/api/notes/notes/1")
        await app.kernel.plugins.disable("notes")
        await app.kernel.plugins.enable("notes")
        await client.get("/api/notes/notes/2")
        samples = parse((await client.get("/metrics")).text)

    key = labels(plugin="notes", route="/api/notes/notes/{note_id}", method="GET", status="200")
    assert samples["nexus_http_requests_total", key] == 2


def test_the_tally_exposes_cumulative_buckets_a_sum_and_counts_by_status() -> None:
    """Durations land in the right `le` buckets (cumulative), with their sum and count."""
    from prometheus_client import CollectorRegistry, generate_latest

    from nexus.plugins.monitoring import RequestTally

    tally = RequestTally([0.005, 0.01, 0.025, 5.0, 10.0])
    registry = CollectorRegistry()
    registry.register(tally)
    scope = {"method": "GET", "route": None, "app": None, "path": "/api/x/y"}
    for seconds, status in ((0.003, 200), (0.005, 200), (0.02, 404), (7.0, 200), (60.0, 500)):
        tally.observe("x", scope, status, seconds)
    tally.observe(None, {**scope, "method": "BREW"}, 405, 0.001)
    samples = parse(generate_latest(registry).decode())

    bucket = "nexus_http_request_duration_seconds_bucket"
    series = {"plugin": "x", "route": "unmatched", "method": "GET"}
    expected = {"0.005": 2, "0.01": 2, "0.025": 3, "5.0": 3, "10.0": 4, "+Inf": 5}
    for le, count in expected.items():
        assert samples[bucket, labels(**series, le=le)] == count
    assert samples["nexus_http_request_duration_seconds_count", labels(**series)] == 5
    assert samples["nexus_http_request_duration_seconds_sum", labels(**series)] == pytest.approx(
        67.028
    )
    total = "nexus_http_requests_total"
    assert samples[total, labels(**series, status="200")] == 3
    assert samples[total, labels(**series, status="404")] == 1
    assert samples[total, labels(**series, status="500")] == 1
    other = labels(plugin="platform", route="unmatched", method="OTHER", status="405")
    assert samples[total, other] == 1


async def test_a_route_that_raises_counts_as_a_500_of_its_plugin() -> None:
    """A handler's exception is counted as a 500 under its plugin and route, not as platform."""

    class Broken(Plugin):
        manifest = {"name": "broken", "version": "1.0"}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            router = APIRouter()

            @router.get("/boom")
            async def boom() -> None:
                raise RuntimeError("boom")

            ctx.http.include_router(router)

    app = create_test_app(plugins=[monitoring(), Broken()])
    async with serve(app) as client:
        assert (await client.get("/api/broken/boom")).status_code == 500
        samples = parse((await client.get("/metrics")).text)
    key = labels(plugin="broken", route="/api/broken/boom", method="GET", status="500")
    assert samples["nexus_http_requests_total", key] == 1

"""The dashboard in a real browser (Chromium via Playwright) against a real `nexus run`.

Screenshots of every page go to test-artifacts/admin/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from nexus.testing.servers import free_port, services_required, wait_for_port

CHROMIUM = Path("/usr/bin/chromium")
#: What works on these machines (see INFRA-NOTES): no sandbox as root, no GPU, nothing fetched.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parents[3] / "test-artifacts" / "admin"
PASSWORD = "correct horse battery staple"

PROBE_MANIFEST = {
    "name": "probe",
    "version": "1.0.0",
    "description": "Answers pings and publishes events on request",
    "entry": "plugin:Probe",
    "permissions": ["events:publish:probe.**"],
}
PROBE_CODE = """
    from fastapi import APIRouter

    from nexus import Plugin


    class Probe(Plugin):
        async def setup(self, ctx):
            router = APIRouter()

            @router.get("/ping")
            async def ping():
                return {"pong": True}

            @router.post("/publish/{topic}")
            async def publish(topic: str):
                event = await ctx.events.publish(f"probe.{topic}", {"topic": topic})
                return {"id": event.id}

            ctx.http.include_router(router)
"""


def _browser_or_skip() -> Any:
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed (Debian package chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            reason = "the playwright package is not installed (pip install playwright)"
        else:
            return sync_playwright
    if services_required():
        pytest.fail(f"{reason}; NEXUS_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(reason)


def _nexus(*args: str, cwd: Path, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nexus.cli", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
        **options,
    )


@contextlib.contextmanager
def nexus_server(root: Path) -> Iterator[str]:
    """An application directory with the probe plugin, an admin user, and `nexus run` on it."""
    port = free_port()
    (root / "plugins" / "probe").mkdir(parents=True)
    (root / "plugins" / "probe" / "manifest.json").write_text(json.dumps(PROBE_MANIFEST))
    (root / "plugins" / "probe" / "plugin.py").write_text(textwrap.dedent(PROBE_CODE))
    config = {
        "app": {"name": "Browser test", "environment": "development"},
        "server": {"host": "127.0.0.1", "port": port},
        "plugin_paths": ["./plugins"],
        "data_dir": "./data",
        "plugins": {
            "auth": {"password_hashing": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}},
            "cache": {"enabled": False},
            "admin": {"stream_heartbeat": 5},
        },
    }
    (root / "nexus.yaml").write_text(yaml.safe_dump(config))
    created = _nexus(
        "users", "create", "root", "--admin", "--password-stdin", cwd=root, input=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    log = (root / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "nexus.cli", "run", "--log-level", "warning"],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NEXUS_CONFIG": str(root / "nexus.yaml")},
    )
    try:
        wait_for_port(port, timeout=30, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def shoot(page: Any, path: Path) -> None:
    """A screenshot of the whole page, taken from its top (the header is sticky)."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=path, full_page=True)


@pytest.fixture
def artifacts() -> Path:
    """test-artifacts/admin, emptied."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


def test_dashboard_in_a_browser(tmp_path: Path, artifacts: Path) -> None:
    """Sign in, disable and enable a plugin, watch an event arrive, see a chart move, sign out."""
    sync_playwright = _browser_or_skip()
    from playwright.sync_api import expect

    with nexus_server(tmp_path) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        errors: list[str] = []
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.on("pageerror", lambda error: errors.append(str(error)))
            # Script errors fail the test; a 401 page load (the sign-in form) is expected.
            page.on(
                "console",
                lambda message: (
                    errors.append(message.text)
                    if message.type == "error" and "Failed to load resource" not in message.text
                    else None
                ),
            )
            page.set_default_timeout(10_000)

            # Anonymous: the dashboard's address shows the sign-in form.
            response = page.goto(f"{base}/admin")
            assert response is not None and response.status == 401
            expect(page.get_by_role("heading", name="Nexus admin")).to_be_visible()
            page.screenshot(path=artifacts / "01-sign-in.png")
            page.get_by_label("Username").fill("root")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()

            # The plugin table.
            probe = page.locator('#plugin-rows tr[data-plugin="probe"]')
            expect(probe).to_have_attribute("data-state", "active")
            expect(page.locator('#plugin-rows tr[data-plugin="admin"]')).to_be_visible()
            shoot(page, artifacts / "02-plugins.png")

            # Disable the probe plugin through the confirmation dialog.
            probe.get_by_role("button", name="Disable probe").click()
            dialog = page.locator("dialog#confirm")
            expect(dialog).to_be_visible()
            expect(dialog).to_contain_text("Disable plugin “probe”?")
            page.screenshot(path=artifacts / "03-confirm-disable.png")
            dialog.get_by_role("button", name="Disable").click()
            expect(probe).to_have_attribute("data-state", "disabled")
            expect(probe.get_by_role("button", name="Enable probe")).to_be_visible()
            assert httpx.get(f"{base}/api/probe/ping").status_code == 404
            shoot(page, artifacts / "04-plugin-disabled.png")

            # And enable it again.
            probe.get_by_role("button", name="Enable probe").click()
            dialog.get_by_role("button", name="Enable").click()
            expect(probe).to_have_attribute("data-state", "active")
            assert httpx.get(f"{base}/api/probe/ping").json() == {"pong": True}

            # The dependency graph.
            page.get_by_role("link", name="Dependencies").click()
            expect(page.locator("#graph-svg g.node")).not_to_have_count(0)
            expect(page.locator('#graph-svg g.node[aria-label^="probe, active"]')).to_have_count(1)
            shoot(page, artifacts / "05-graph.png")

            # An event published over HTTP shows up in the live stream.
            page.get_by_role("link", name="Events").click()
            expect(page.locator("#events-status")).to_contain_text("Live")
            published = httpx.post(f"{base}/api/probe/publish/browser-check")
            assert published.status_code == 200
            item = page.locator('#event-list li[data-type="probe.browser-check"]')
            expect(item).to_have_count(1)
            expect(item).to_contain_text("from probe")
            shoot(page, artifacts / "06-events.png")

            # Paused: new events are held, not shown, until resumed.
            page.get_by_role("button", name="Pause").click()
            httpx.post(f"{base}/api/probe/publish/while-paused")
            expect(page.locator("#events-status")).to_contain_text("new event(s) held")
            expect(page.locator("#events-status")).not_to_contain_text(" 0 new event(s)")
            expect(page.locator('#event-list li[data-type="probe.while-paused"]')).to_have_count(0)
            page.get_by_role("button", name="Resume").click()
            expect(page.locator('#event-list li[data-type="probe.while-paused"]')).to_have_count(1)

            # The charts redraw as samples come in.
            page.get_by_role("link", name="Metrics").click()
            chart = page.locator("#chart-requests svg")
            expect(chart.locator("path.series")).not_to_have_count(0)
            first = chart.get_attribute("data-last")
            for _ in range(5):
                httpx.get(f"{base}/api/probe/ping")
            expect(chart).not_to_have_attribute("data-last", first or "")
            expect(page.locator("#chart-requests .chart-legend")).to_contain_text("probe")
            shoot(page, artifacts / "07-metrics.png")

            page.get_by_role("link", name="Dead letters").click()
            expect(page.locator("#dead-letters-summary")).to_contain_text("0 dead letter(s)")
            shoot(page, artifacts / "08-dead-letters.png")

            page.get_by_role("link", name="Configuration").click()
            expect(page.locator("#config-view")).to_contain_text('"name": "Browser test"')
            page.screenshot(path=artifacts / "09-config.png")

            page.get_by_role("link", name="Audit log").click()
            rows = page.locator("#audit-rows")
            expect(rows).to_contain_text("admin.plugin.disable")
            page.get_by_label("Action starts with").fill("admin.plugin.enable")
            page.get_by_role("button", name="Search").click()
            expect(rows.locator("tr")).to_have_count(1)
            expect(rows).to_contain_text("root")
            shoot(page, artifacts / "10-audit.png")

            # Readable on a phone: tables become cards, nothing scrolls sideways.
            page.set_viewport_size({"width": 375, "height": 800})
            page.get_by_role("link", name="Plugins").click()
            expect(probe).to_be_visible()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page is {overflow}px wider than a 375px screen"
            page.screenshot(path=artifacts / "11-plugins-375px.png")
            page.set_viewport_size({"width": 1280, "height": 860})

            # Keyboard: the first Tab reaches the skip link; buttons and the dialog work by keys.
            page.reload()
            page.keyboard.press("Tab")
            expect(page.locator(".skip-link")).to_be_focused()
            probe.get_by_role("button", name="Reload probe").focus()
            page.keyboard.press("Enter")
            expect(dialog).to_be_visible()
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()
            expect(probe.get_by_role("button", name="Reload probe")).to_be_focused()

            # Sign out: back to the sign-in form, and the API no longer answers.
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("button", name="Sign in")).to_be_visible()
            assert page.request.get(f"{base}/admin/api/plugins").status == 401
            page.screenshot(path=artifacts / "12-signed-out.png")
            assert errors == [], errors
        finally:
            browser.close()

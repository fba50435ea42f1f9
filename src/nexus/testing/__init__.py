"""Helpers for testing plugins: real kernels and apps configured in code, and tools around them.

kernel = create_test_kernel(plugins=[MyPlugin()], config={"plugins": {"my": {"x": 1}}})
async with kernel: ...

app = create_test_app(plugin_paths=["./plugins"], services={CACHE: FakeCache()})
recorder = EventRecorder(app)
async with serve(app) as client:
    response = await client.post("/api/my/items", json={"name": "x"})
    [event] = await recorder.wait_for("my.item.created")
    await assert_unloads_cleanly(app, "my")

With pytest, the `nexus.testing.plugin` pytest plugin (installed with Nexus) adds the fixtures
`nexus_client`, `nexus_kernel`, `nexus_app`, `nexus_app_factory` and `event_recorder`, and the
`nexus_config` marker; async tests and fixtures need pytest-asyncio.
"""

from __future__ import annotations

from nexus.testing.clock import FakeClock
from nexus.testing.factories import (
    AppFactory,
    build_config,
    create_test_app,
    create_test_kernel,
    fake_plugin,
    serve,
)
from nexus.testing.leaks import assert_unloads_cleanly
from nexus.testing.recorder import EventRecorder

__all__ = [
    "AppFactory",
    "EventRecorder",
    "FakeClock",
    "assert_unloads_cleanly",
    "build_config",
    "create_test_app",
    "create_test_kernel",
    "fake_plugin",
    "serve",
]

"""Plugin lifecycle through a real kernel: order, failures at each stage, strict mode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from nexus import Kernel, Plugin, PluginContext, PluginState, ServiceKey, StartupError
from nexus.kernel.config import NexusConfig
from tests.conftest import PluginWriter

S = PluginState


class Recorder(Plugin):
    """An inline plugin that logs its setup and teardown."""

    def __init__(
        self, name: str, log: list[str], *, requires: tuple[str, ...] = (), **manifest: Any
    ) -> None:
        self.manifest = {
            "name": name,
            "version": "1.0",
            "requires": dict.fromkeys(requires, ""),
            **manifest,
        }
        self.log = log

    async def setup(self, ctx: PluginContext[Any]) -> None:
        self.log.append(f"start {ctx.name}")

    async def teardown(self, ctx: PluginContext[Any]) -> None:
        self.log.append(f"stop {ctx.name}")


async def test_plugins_stop_in_reverse_start_order(make_config: Callable[..., NexusConfig]) -> None:
    """A plugin is started after its dependencies and stopped before them."""
    log: list[str] = []
    kernel = Kernel(
        make_config(),
        plugins=[
            Recorder("api", log, requires=("db",)),
            Recorder("db", log),
            Recorder("cache", log, after=["db"]),
        ],
        entry_points=False,
    )
    async with kernel:
        assert kernel.plugins.active() == ["db", "api", "cache"]
    assert log == ["start db", "start api", "start cache", "stop cache", "stop api", "stop db"]
    assert {s.state for s in kernel.plugins.statuses()} == {S.STOPPED}


FAILING = {
    "import_error": (
        "import",
        "import not_a_module_anywhere\n",
        "No module named 'not_a_module_anywhere'",
    ),
    "syntax": ("import", "def broken(:\n", "Syntax error in nexus_plugins.syntax.plugin"),
    "no_class": ("import", "X = 1\n", "has no 'Main'; check 'entry' in manifest.json"),
    "not_plugin": (
        "import",
        "class Main:\n    pass\n",
        "plugin:Main is not a nexus.Plugin subclass",
    ),
    "ctor": (
        "load",
        "from nexus import Plugin\nclass Main(Plugin):\n    def __init__(self):\n        raise RuntimeError('no ctor')\n",
        "RuntimeError: no ctor",
    ),
    "setup_raises": (
        "setup",
        "from nexus import Plugin\nclass Main(Plugin):\n    async def setup(self, ctx):\n        raise ValueError('bad setup')\n",
        "ValueError: bad setup",
    ),
    "setup_hangs": (
        "setup",
        "import asyncio\nfrom nexus import Plugin\nclass Main(Plugin):\n    async def setup(self, ctx):\n        await asyncio.sleep(60)\n",
        "setup did not finish within 0.2 s (kernel.setup_timeout)",
    ),
}


@pytest.mark.parametrize("name", sorted(FAILING))
async def test_failure_at_each_stage_is_isolated(
    name: str, plugins: PluginWriter, make_config: Callable[..., NexusConfig]
) -> None:
    """A plugin failing at any stage is failed with stage and reason; dependents are blocked; others run."""
    stage, code, reason = FAILING[name]
    plugins.write(name, code)
    plugins.write("dependent", requires={name: ""})
    plugins.write("bystander")
    kernel = Kernel(make_config(kernel={"setup_timeout": 0.2}), entry_points=False)
    async with kernel:
        failed = kernel.plugins.status(name)
        assert failed.state is S.FAILED
        assert failed.failure is not None and failed.failure.stage == stage
        assert reason in failed.failure.reason
        blocked = kernel.plugins.status("dependent")
        assert blocked.state is S.BLOCKED
        assert blocked.blocked_reason is not None and blocked.blocked_reason.startswith(
            f"needs {name!r}, which failed at {stage}"
        )
        assert kernel.plugins.status("bystander").state is S.ACTIVE


async def test_invalid_manifest_fails_at_validate(
    plugins: PluginWriter, make_config: Callable[..., NexusConfig]
) -> None:
    """A plugin with an invalid manifest is failed at validate; its code is never imported."""
    directory = plugins.write("broken", "raise SystemExit('imported!')\n", version="not-a-version")
    plugins.write("fine")
    async with Kernel(make_config(), entry_points=False) as kernel:
        status = kernel.plugins.status("broken")
        assert status.state is S.FAILED and status.failure is not None
        assert status.failure.stage == "validate"
        assert (
            f"{directory.name}/manifest.json: version: 'not-a-version' is not a PEP 440 version"
            in status.failure.reason
        )
        assert kernel.plugins.status("fine").state is S.ACTIVE


async def test_invalid_config_fails_only_that_plugin(
    plugins: PluginWriter, make_config: Callable[..., NexusConfig]
) -> None:
    """A plugin whose config section does not validate fails at config with the key path."""
    plugins.write(
        "limits",
        """
        from pydantic import BaseModel
        from nexus import Plugin

        class Settings(BaseModel):
            max_users: int = 10

        class Main(Plugin):
            Config = Settings
        """,
    )
    plugins.write("fine")
    async with Kernel(
        make_config(plugins={"limits": {"max_users": "lots"}}), entry_points=False
    ) as kernel:
        status = kernel.plugins.status("limits")
        assert (
            status.state is S.FAILED
            and status.failure is not None
            and status.failure.stage == "config"
        )
        assert "plugins.limits.max_users" in status.failure.reason
        assert kernel.plugins.status("fine").state is S.ACTIVE


async def test_failed_setup_leaves_nothing_registered(
    plugins: PluginWriter, make_config: Callable[..., NexusConfig]
) -> None:
    """Subscriptions, services and tasks staged by a setup that then raises never go live."""
    plugins.write(
        "half",
        """
        import asyncio
        from nexus import Plugin, ServiceKey

        STARTED = []

        class Main(Plugin):
            async def setup(self, ctx):
                ctx.events.subscribe("half.*", self.on_event)
                ctx.services.provide(ServiceKey("half"), object())
                ctx.tasks.spawn(self.loop)
                raise RuntimeError("changed my mind")

            async def loop(self):
                STARTED.append(1)

            async def on_event(self, event):
                pass
        """,
        provides=["half"],
        permissions=["events:subscribe:half.*"],
    )
    async with Kernel(make_config(), entry_points=False) as kernel:
        assert kernel.plugins.status("half").state is S.FAILED
        assert kernel.bus.subscriptions() == []
        assert not kernel.services.has(ServiceKey[object]("half"))
        await asyncio.sleep(0.01)
        import nexus_plugins.half.plugin as module  # type: ignore[import-not-found]

        assert module.STARTED == []


async def test_activation_conflict_fails_second_provider(
    plugins: PluginWriter, make_config: Callable[..., NexusConfig]
) -> None:
    """A second plugin providing an existing service fails at activate, and the first keeps it."""
    code = """
    from nexus import Plugin, ServiceKey

    class Main(Plugin):
        async def setup(self, ctx):
            ctx.services.provide(ServiceKey("clock"), ctx.name)
    """
    plugins.write("a_clock", code, provides=["clock"])
    plugins.write("b_clock", code, provides=["clock"])
    async with Kernel(make_config(), entry_points=False) as kernel:
        status = kernel.plugins.status("b_clock")
        assert status.failure is not None and status.failure.stage == "activate"
        assert "plugin 'a_clock' already provides it" in status.failure.reason
        assert kernel.services.get(ServiceKey[str]("clock")) == "a_clock"


async def test_strict_mode_aborts_startup(make_config: Callable[..., NexusConfig]) -> None:
    """In strict mode any failed or blocked plugin aborts startup and stops what had started."""
    log: list[str] = []

    class Broken(Recorder):
        async def setup(self, ctx: PluginContext[Any]) -> None:
            raise RuntimeError("boom")

    kernel = Kernel(
        make_config(kernel={"strict": True}),
        plugins=[
            Recorder("db", log),
            Broken("broken", log),
            Recorder("web", log, requires=("broken",)),
        ],
        entry_points=False,
    )
    with pytest.raises(
        StartupError,
        match=r"2 plugin\(s\) could not start:\n  - broken: failed at setup: RuntimeError: boom",
    ):
        await kernel.start()
    assert log == ["start db", "stop db"]
    assert not kernel.is_started


async def test_teardown_error_is_logged_not_fatal(
    make_config: Callable[..., NexusConfig], caplog: pytest.LogCaptureFixture
) -> None:
    """A teardown that raises is logged with the plugin name; the others still stop."""
    log: list[str] = []

    class BadTeardown(Recorder):
        async def teardown(self, ctx: PluginContext[Any]) -> None:
            raise OSError("disk gone")

    kernel = Kernel(
        make_config(),
        plugins=[Recorder("db", log), BadTeardown("bad", log, requires=("db",))],
        entry_points=False,
    )
    with caplog.at_level(logging.ERROR, logger="nexus.kernel"):
        async with kernel:
            pass
    assert log == ["start db", "start bad", "stop db"]
    assert "Plugin bad: teardown failed" in caplog.text
    assert kernel.plugins.status("bad").state is S.STOPPED


async def test_disabled_in_config_blocks_dependents(
    make_config: Callable[..., NexusConfig],
) -> None:
    """`enabled: false` disables a plugin; what requires it is blocked and says why."""
    log: list[str] = []
    config = make_config(plugins={"db": {"enabled": False}})
    kernel = Kernel(
        config,
        plugins=[Recorder("db", log), Recorder("api", log, requires=("db",))],
        entry_points=False,
    )
    async with kernel:
        assert kernel.plugins.status("db").state is S.DISABLED
        assert kernel.plugins.status("api").blocked_reason == "needs 'db', which is disabled"
    assert log == []


async def test_runtime_disable_and_enable(make_config: Callable[..., NexusConfig]) -> None:
    """Disabling stops dependents first and blocks them; enabling starts them again in order."""
    log: list[str] = []
    kernel = Kernel(
        make_config(),
        plugins=[
            Recorder("db", log),
            Recorder("api", log, requires=("db",)),
            Recorder("stats", log, optional={"db": ""}),
        ],
        entry_points=False,
    )
    async with kernel:
        log.clear()
        await kernel.plugins.disable("db")
        assert log == ["stop stats", "stop api", "stop db", "start stats"]
        assert kernel.plugins.status("api").state is S.BLOCKED
        assert kernel.plugins.status("stats").state is S.ACTIVE
        log.clear()
        await kernel.plugins.enable("db")
        assert log == ["start db", "start api"]
        assert kernel.plugins.active() == ["stats", "db", "api"]


class Clock:
    def now(self) -> str:
        return "noon"


CLOCK = ServiceKey[Clock]("clock", Clock)


class ClockProvider(Plugin):
    manifest = {"name": "clock", "version": "1.0", "provides": ["clock"]}

    async def setup(self, ctx: PluginContext[Any]) -> None:
        ctx.services.provide(CLOCK, Clock())


class ClockUser(Plugin):
    def __init__(self, name: str, permissions: list[str], requires: dict[str, str]) -> None:
        self.manifest = {
            "name": name,
            "version": "1.0",
            "permissions": permissions,
            "requires": requires,
        }
        self.result: str | Exception = ""

    async def setup(self, ctx: PluginContext[Any]) -> None:
        try:
            self.result = ctx.services.get(CLOCK).now()
        except Exception as exc:
            self.result = exc


async def test_service_use_needs_permission(make_config: Callable[..., NexusConfig]) -> None:
    """A plugin gets a service only if its manifest grants services:use for it."""
    allowed = ClockUser("allowed", ["services:use:clock"], {"clock": ""})
    denied = ClockUser("denied", [], {"clock": ""})
    async with Kernel(
        make_config(), plugins=[ClockProvider(), allowed, denied], entry_points=False
    ):
        assert allowed.result == "noon"
        assert isinstance(denied.result, PermissionError)
        assert "'denied' lacks permission 'services:use:clock'" in str(denied.result)


async def test_missing_service_error_says_who_could_provide_it(
    make_config: Callable[..., NexusConfig],
) -> None:
    """Asking for a service whose provider is disabled names the provider and its state."""
    user = ClockUser("user", ["services:use:clock"], {})
    config = make_config(plugins={"clock": {"enabled": False}})
    async with Kernel(config, plugins=[ClockProvider(), user], entry_points=False):
        assert isinstance(user.result, LookupError)
        message = str(user.result)
        assert "Plugin 'user' needs service 'clock', but no active plugin provides it." in message
        assert "It is provided by 'clock' (disabled)." in message
        assert "Add 'clock' to the `requires` of 'user' so it starts first." in message


async def test_providing_unlisted_service_fails_setup(
    make_config: Callable[..., NexusConfig],
) -> None:
    """Providing a key missing from the manifest's `provides` fails with a fix."""

    class Sneaky(Plugin):
        manifest = {"name": "sneaky", "version": "1.0"}

        async def setup(self, ctx: PluginContext[Any]) -> None:
            ctx.services.provide(CLOCK, Clock())

    async with Kernel(make_config(), plugins=[Sneaky()], entry_points=False) as kernel:
        failure = kernel.plugins.status("sneaky").failure
        assert failure is not None and failure.stage == "setup"
        assert 'Add "clock" to "provides" in manifest.json' in failure.reason


async def test_duplicate_plugin_names_both_sources(
    tmp_path: Any, make_config: Callable[..., NexusConfig]
) -> None:
    """Two plugin directories providing one name is an error naming both."""
    PluginWriter(tmp_path / "plugins").write("twin")
    PluginWriter(tmp_path / "more").write("twin")
    async with Kernel(make_config(plugin_paths=["plugins", "more"]), entry_points=False) as kernel:
        failure = kernel.plugins.status("twin").failure
        assert failure is not None and failure.stage == "validate"
        assert "Plugin 'twin' is provided twice: by" in failure.reason
        assert "plugins/twin" in failure.reason and "more/twin" in failure.reason


async def test_health_reports_state_and_plugin_checks(
    make_config: Callable[..., NexusConfig],
) -> None:
    """health() asks active plugins and explains inactive ones."""
    from nexus import Health

    class Sick(Plugin):
        manifest = {"name": "sick", "version": "1.0"}

        async def health(self) -> Health:
            return Health.unhealthy("database unreachable")

    log: list[str] = []
    config = make_config(plugins={"off": {"enabled": False}})
    async with Kernel(
        config, plugins=[Sick(), Recorder("ok", log), Recorder("off", log)], entry_points=False
    ) as kernel:
        health = await kernel.plugins.health()
        assert health["ok"].ok and not health["sick"].ok
        assert health["sick"].detail == "database unreachable"
        assert health["off"].detail == "plugin is disabled"

"""Live reload: the watcher reloads exactly the directory plugins whose files changed."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nexus import Kernel, PluginState, PluginStateError
from nexus.kernel import loader
from nexus.kernel.config import NexusConfig
from nexus.kernel.records import PluginStatus
from nexus.kernel.watcher import PluginWatcher, fingerprint, is_ignored, snapshot
from tests.conftest import PluginWriter

S = PluginState

# Each setup appends the plugin's name and version to a log file beside the plugins, so a test
# can count setups across re-imports (module state does not survive a reload).
COUNTING = """
from pathlib import Path
from nexus import Plugin

class Main(Plugin):
    async def setup(self, ctx):
        self.word = {word!r}
        with open(Path(__file__).parents[2] / "setups.log", "a") as log:
            log.write(f"{{ctx.name}} {{self.word}}\\n")
"""


def write(plugins: PluginWriter, name: str, word: str) -> None:
    plugins.write(name, COUNTING.format(word=word))


def setups(plugins: PluginWriter) -> list[str]:
    log = plugins.root.parent / "setups.log"
    return log.read_text().splitlines() if log.exists() else []


async def settle(watcher: PluginWatcher) -> list[str]:
    """Poll until a change has been acted on (bounded), returning the reloaded plugins."""
    for _ in range(watcher.quiet_polls + 2):
        if done := await watcher.poll():
            return [status.name for status in done]
    return []


@pytest.fixture(autouse=True)
def forget_plugin_modules() -> Iterator[None]:
    """Drop imported directory plugins after each test: the next test reuses their names."""
    yield
    for name in {m.split(".")[1] for m in sys.modules if m.startswith(f"{loader.PACKAGE}.")}:
        loader.release_directory(name)


@pytest.fixture
def kernel(make_config: Callable[..., NexusConfig]) -> Kernel:
    """A kernel over the test plugin directory, without entry points."""
    return Kernel(make_config(), entry_points=False)


async def test_only_the_edited_plugin_is_reloaded(plugins: PluginWriter, kernel: Kernel) -> None:
    """Editing one of two plugins re-runs that plugin's setup and leaves the other alone."""
    write(plugins, "alpha", "a1")
    write(plugins, "beta", "b1")
    async with kernel:
        watcher = PluginWatcher(kernel)
        await watcher.prime()
        write(plugins, "alpha", "a2-longer")
        assert await settle(watcher) == ["alpha"]
        assert kernel.plugins.plugin("alpha").word == "a2-longer"  # type: ignore[union-attr]
    assert setups(plugins) == ["alpha a1", "beta b1", "alpha a2-longer"]


async def test_waits_for_files_to_settle_before_reloading(
    plugins: PluginWriter, kernel: Kernel
) -> None:
    """Changes keep postponing the reload until the files stay unchanged for quiet_polls polls."""
    write(plugins, "alpha", "a1")
    async with kernel:
        watcher = PluginWatcher(kernel, quiet_polls=2)
        await watcher.prime()
        source = plugins.root / "alpha" / "plugin.py"
        for word in ("a2", "a33", "a444"):
            source.write_text(COUNTING.format(word=word))
            assert await watcher.poll() == []  # changed again: the quiet period restarts
        assert await watcher.poll() == []
        assert [s.name for s in await watcher.poll()] == ["alpha"]
    assert setups(plugins) == ["alpha a1", "alpha a444"]


async def test_syntax_error_fails_only_that_plugin_and_a_fix_recovers_it(
    plugins: PluginWriter, kernel: Kernel, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken edit fails that plugin at import, logged with the reason; fixing it reactivates it."""
    write(plugins, "alpha", "a1")
    write(plugins, "beta", "b1")
    async with kernel:
        watcher = PluginWatcher(kernel)
        await watcher.prime()
        (plugins.root / "alpha" / "plugin.py").write_text("def broken(:\n")
        with caplog.at_level(logging.INFO, logger="nexus.reload"):
            assert await settle(watcher) == ["alpha"]
        status = kernel.plugins.status("alpha")
        assert status.state is S.FAILED and status.failure is not None
        assert status.failure.stage == "import" and "plugin.py:1" in status.failure.reason
        assert kernel.plugins.status("beta").state is S.ACTIVE
        assert any(
            r.name == "nexus.reload"
            and r.levelno == logging.ERROR
            and "Reloaded plugin alpha: failed" in r.getMessage()
            and "Syntax error" in r.getMessage()
            for r in caplog.records
        )
        write(plugins, "alpha", "fixed")
        with caplog.at_level(logging.INFO, logger="nexus.reload"):
            assert await settle(watcher) == ["alpha"]
        assert kernel.plugins.status("alpha").state is S.ACTIVE
        assert kernel.plugins.plugin("alpha").word == "fixed"  # type: ignore[union-attr]
        assert "Reloaded plugin alpha: active" in caplog.text


async def test_new_plugin_directory_is_loaded(plugins: PluginWriter, kernel: Kernel) -> None:
    """A plugin directory created while running is loaded once its files settle."""
    write(plugins, "alpha", "a1")
    async with kernel:
        watcher = PluginWatcher(kernel)
        await watcher.prime()
        write(plugins, "gamma", "g1")
        assert await settle(watcher) == ["gamma"]
        assert kernel.plugins.status("gamma").state is S.ACTIVE
    assert setups(plugins) == ["alpha a1", "gamma g1"]


async def test_directory_without_manifest_waits_for_one(
    plugins: PluginWriter, kernel: Kernel
) -> None:
    """A new directory is loaded only once it has a manifest.json."""
    async with kernel:
        watcher = PluginWatcher(kernel)
        await watcher.prime()
        (plugins.root / "draft").mkdir()
        (plugins.root / "draft" / "notes.txt").write_text("work in progress")
        assert await settle(watcher) == []
        assert "draft" not in kernel.plugins
        write(plugins, "draft", "d1")
        assert await settle(watcher) == ["draft"]
        assert kernel.plugins.status("draft").state is S.ACTIVE


async def test_removed_plugin_directory_is_unloaded(
    plugins: PluginWriter, kernel: Kernel, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleting a plugin's directory unloads the plugin."""
    write(plugins, "alpha", "a1")
    async with kernel:
        watcher = PluginWatcher(kernel)
        await watcher.prime()
        for file in (plugins.root / "alpha").iterdir():
            file.unlink()
        (plugins.root / "alpha").rmdir()
        with caplog.at_level(logging.INFO, logger="nexus.reload"):
            assert await settle(watcher) == []
        assert "alpha" not in kernel.plugins
        assert "Plugin alpha was removed from disk; unloaded it" in caplog.text


async def test_noise_files_do_not_trigger_reloads(plugins: PluginWriter, kernel: Kernel) -> None:
    """Bytecode caches, hidden files and editor temp files are ignored."""
    write(plugins, "alpha", "a1")
    async with kernel:
        watcher = PluginWatcher(kernel)
        await watcher.prime()
        directory = plugins.root / "alpha"
        (directory / "__pycache__").mkdir(exist_ok=True)
        (directory / "__pycache__" / "plugin.cpython-311.pyc").write_bytes(b"\0")
        for name in ("plugin.py~", ".#plugin.py", ".plugin.py.swp", "plugin.pyc", ".hidden"):
            (directory / name).write_text("noise")
        (plugins.root / ".git").mkdir()
        assert await settle(watcher) == []
    assert setups(plugins) == ["alpha a1"]


async def test_disabled_plugin_reload_is_reported_as_disabled(
    plugins: PluginWriter,
    make_config: Callable[..., NexusConfig],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Editing a plugin that the configuration disables keeps it disabled and says so."""
    write(plugins, "alpha", "a1")
    config = make_config(plugins={"alpha": {"enabled": False}})
    async with Kernel(config, entry_points=False) as kernel:
        watcher = PluginWatcher(kernel)
        await watcher.prime()
        write(plugins, "alpha", "a2-longer")
        with caplog.at_level(logging.INFO, logger="nexus.reload"):
            assert await settle(watcher) == ["alpha"]
        assert kernel.plugins.status("alpha").state is S.DISABLED
    assert "Reloaded plugin alpha: disabled in the configuration" in caplog.text
    assert setups(plugins) == []


async def test_blocked_reload_is_reported_with_its_reason(
    plugins: PluginWriter, kernel: Kernel, caplog: pytest.LogCaptureFixture
) -> None:
    """A manifest edited to require a missing plugin leaves it blocked, and the log says why."""
    write(plugins, "alpha", "a1")
    async with kernel:
        watcher = PluginWatcher(kernel)
        await watcher.prime()
        plugins.write("alpha", COUNTING.format(word="a2"), requires={"ghost": ""})
        with caplog.at_level(logging.INFO, logger="nexus.reload"):
            assert await settle(watcher) == ["alpha"]
        assert kernel.plugins.status("alpha").state is S.BLOCKED
    assert "Reloaded plugin alpha: blocked: needs 'ghost', which is not installed" in caplog.text


async def test_background_polling_reloads_and_stops(plugins: PluginWriter, kernel: Kernel) -> None:
    """Started, the watcher polls by itself; stopped, it no longer reacts to changes."""
    write(plugins, "alpha", "a1")
    async with kernel:
        watcher = PluginWatcher(kernel, interval=0.02)
        await watcher.start()
        await watcher.start()  # idempotent
        assert watcher.is_running
        write(plugins, "alpha", "a2-longer")
        for _ in range(500):  # bounded wait, not a timing assertion
            if setups(plugins)[-1:] == ["alpha a2-longer"]:
                break
            await asyncio.sleep(0.01)
        assert setups(plugins) == ["alpha a1", "alpha a2-longer"]
        await watcher.stop()
        await watcher.stop()  # idempotent
        assert not watcher.is_running
        write(plugins, "alpha", "a3-even-longer")
        await asyncio.sleep(watcher.interval * 10)
        assert setups(plugins) == ["alpha a1", "alpha a2-longer"]


@pytest.mark.parametrize(
    "error",
    [RuntimeError("disk on fire"), PluginStateError("disk on fire")],
    ids=lambda e: type(e).__name__,
)
async def test_a_failing_reload_does_not_stop_the_watcher(
    plugins: PluginWriter, kernel: Kernel, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    """An error raised while reloading one plugin is logged and the next change still reloads."""
    write(plugins, "alpha", "a1")
    write(plugins, "beta", "b1")
    async with kernel:
        watcher = PluginWatcher(kernel)
        await watcher.prime()
        original = kernel.plugins.reload
        calls: list[str] = []

        async def flaky(name: str) -> object:
            calls.append(name)
            if len(calls) == 1:
                raise error
            return await original(name)

        kernel.plugins.reload = flaky  # type: ignore[method-assign,assignment]
        write(plugins, "alpha", "a2-longer")
        with caplog.at_level(logging.INFO, logger="nexus.reload"):
            assert await settle(watcher) == []
            write(plugins, "beta", "b2-longer")
            assert await settle(watcher) == ["beta"]
        assert "Live reload of plugin alpha failed" in caplog.text
        assert "disk on fire" in caplog.text
    assert calls == ["alpha", "beta"]


async def test_poll_before_prime_only_takes_the_baseline(
    plugins: PluginWriter, kernel: Kernel
) -> None:
    """The first poll of an unprimed watcher records the files and reloads nothing."""
    write(plugins, "alpha", "a1")
    async with kernel:
        watcher = PluginWatcher(kernel)
        assert await watcher.poll() == []
        assert await settle(watcher) == []
        write(plugins, "alpha", "a2-longer")
        assert await settle(watcher) == ["alpha"]


async def test_errors_while_polling_are_logged_and_polling_goes_on(
    kernel: Kernel, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception escaping a background poll is logged, and the next poll still runs."""
    polls: list[int] = []

    class Flaky(PluginWatcher):
        async def poll(self) -> list[PluginStatus]:
            polls.append(len(polls))
            if len(polls) == 1:
                raise OSError("file system went away")
            return []

    async with kernel:
        watcher = Flaky(kernel, interval=0.01)
        with caplog.at_level(logging.ERROR, logger="nexus.reload"):
            await watcher.start()
            for _ in range(500):  # bounded wait, not a timing assertion
                if len(polls) >= 2:
                    break
                await asyncio.sleep(0.01)
            await watcher.stop()
    assert len(polls) >= 2
    assert "checking the plugin directories failed" in caplog.text
    assert "file system went away" in caplog.text


async def test_directory_created_and_removed_before_settling_is_ignored(
    plugins: PluginWriter, kernel: Kernel
) -> None:
    """A plugin directory that vanishes before its files settle loads nothing."""
    async with kernel:
        watcher = PluginWatcher(kernel)
        await watcher.prime()
        write(plugins, "ghost", "g1")
        assert await watcher.poll() == []
        for file in (plugins.root / "ghost").iterdir():
            file.unlink()
        (plugins.root / "ghost").rmdir()
        assert await settle(watcher) == []
        assert "ghost" not in kernel.plugins


def test_snapshot_skips_missing_paths_loose_files_and_shadowed_names(tmp_path: Path) -> None:
    """Only directories below existing plugin paths count; the first path holding a name wins."""
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "alpha").mkdir(parents=True)
    (first / "alpha" / "plugin.py").write_text("a")
    (first / "README.md").write_text("not a plugin")
    (second / "alpha").mkdir(parents=True)
    (second / "alpha" / "plugin.py").write_text("shadowed")
    (second / "beta").mkdir()
    assert snapshot([tmp_path / "missing", first, second]) == {
        "alpha": {"plugin.py": (os.stat(first / "alpha" / "plugin.py").st_mtime_ns, 1)},
        "beta": {},
    }


def test_fingerprint_sees_nested_files_and_skips_noise(tmp_path: Path) -> None:
    """The fingerprint lists nested files by relative path, with mtime and size."""
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "__pycache__" / "mod.pyc").write_bytes(b"\0")
    (tmp_path / "top.py").write_text("")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    stat = os.stat(tmp_path / "pkg" / "mod.py")
    assert fingerprint(tmp_path) == {
        "pkg/mod.py": (stat.st_mtime_ns, 6),
        "top.py": (os.stat(tmp_path / "top.py").st_mtime_ns, 0),
    }
    assert fingerprint(tmp_path / "missing") == {}


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        ("plugin.py", False),
        ("templates", False),
        ("__pycache__", True),
        ("plugin.pyc", True),
        (".hidden", True),
        (".#plugin.py", True),
        ("plugin.py~", True),
        (".plugin.py.swp", True),
        ("plugin.swp", True),
        ("4913", True),
    ],
)
def test_noise_names(name: str, ignored: bool) -> None:
    """Editor temp files, hidden files and caches are recognised as noise."""
    assert is_ignored(name) is ignored


def test_rejects_nonsense_settings(kernel: Kernel) -> None:
    """A non-positive interval or quiet period is refused with the value named."""
    with pytest.raises(ValueError, match="interval must be positive, got 0"):
        PluginWatcher(kernel, interval=0)
    with pytest.raises(ValueError, match="quiet_polls must be at least 1, got 0"):
        PluginWatcher(kernel, quiet_polls=0)

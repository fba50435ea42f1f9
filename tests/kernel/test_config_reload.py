"""Configuration reload through a running kernel: validate first, then notify or restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from nexus import ConfigError, Kernel, Plugin, PluginContext, PluginState
from nexus.kernel.config import load_config


class Limits(BaseModel):
    max_users: int = 10


class Tunable(Plugin):
    """Applies config changes in place."""

    Config = Limits
    manifest = {"name": "tunable", "version": "1.0"}

    def __init__(self) -> None:
        self.setups = 0
        self.seen: list[int] = []

    async def setup(self, ctx: PluginContext[Limits]) -> None:
        self.setups += 1
        self.seen.append(ctx.config.max_users)

    async def on_config_change(self, ctx: PluginContext[Any], config: Any) -> bool:
        self.seen.append(config.max_users)
        return True


class Rigid(Tunable):
    """Does not handle config changes, so it is restarted."""

    manifest = {"name": "rigid", "version": "1.0"}

    async def on_config_change(self, ctx: PluginContext[Any], config: Any) -> bool:
        return False


def write(path: Path, plugins: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump({"plugin_paths": [], "plugins": plugins}))


async def test_reload_notifies_or_restarts(tmp_path: Path) -> None:
    """A plugin handling on_config_change gets the new config; one that does not is restarted."""
    path = tmp_path / "nexus.yaml"
    write(path, {"tunable": {"max_users": 10}, "rigid": {"max_users": 1}})
    tunable, rigid = Tunable(), Rigid()
    async with Kernel(
        load_config(path, env={}), plugins=[tunable, rigid], entry_points=False
    ) as kernel:
        write(path, {"tunable": {"max_users": 20}, "rigid": {"max_users": 2}})
        assert await kernel.reload_config() == {"tunable", "rigid"}
        assert (tunable.setups, tunable.seen) == (1, [10, 20])
        assert (rigid.setups, rigid.seen) == (2, [1, 2])
        assert kernel.plugins.status("rigid").state is PluginState.ACTIVE


async def test_invalid_reload_changes_nothing(tmp_path: Path) -> None:
    """A reload with an invalid plugin section raises with the file and key, and keeps the old config."""
    path = tmp_path / "nexus.yaml"
    write(path, {"tunable": {"max_users": 10}})
    tunable = Tunable()
    async with Kernel(load_config(path, env={}), plugins=[tunable], entry_points=False) as kernel:
        write(path, {"tunable": {"max_users": "many"}})
        with pytest.raises(ConfigError, match=r"nexus.yaml:\d+: plugins.tunable.max_users"):
            await kernel.reload_config()
        assert kernel.config.plugin_section("tunable") == {"max_users": 10}
        assert tunable.seen == [10]


async def test_reload_can_disable_and_enable(tmp_path: Path) -> None:
    """Flipping `enabled` in the file stops or starts the plugin on reload."""
    path = tmp_path / "nexus.yaml"
    write(path, {})
    tunable = Tunable()
    async with Kernel(load_config(path, env={}), plugins=[tunable], entry_points=False) as kernel:
        write(path, {"tunable": {"enabled": False}})
        await kernel.reload_config()
        assert kernel.plugins.status("tunable").state is PluginState.DISABLED
        write(path, {"tunable": {"enabled": True, "max_users": 5}})
        await kernel.reload_config()
        assert kernel.plugins.status("tunable").state is PluginState.ACTIVE
        assert tunable.seen[-1] == 5

"""The Plugin base class and the Health it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from nexus.kernel.context import PluginContext


@dataclass(frozen=True, slots=True)
class Health:
    """A plugin's health: `ok`, with a human-readable detail and optional data."""

    ok: bool = True
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def healthy(cls, detail: str = "", **data: Any) -> Health:
        """A passing health check."""
        return cls(True, detail, data)

    @classmethod
    def unhealthy(cls, detail: str, **data: Any) -> Health:
        """A failing health check; `detail` says what is wrong."""
        return cls(False, detail, data)


class Plugin:
    """Base class of every plugin. Override `setup`; the rest is optional.

    Everything registered through the context in `setup` (routes, subscriptions, services,
    tasks) becomes visible together once setup returns, and is revoked when the plugin stops.
    """

    #: A pydantic model validating `plugins.<name>` in the configuration, or None.
    Config: ClassVar[type[BaseModel] | None] = None

    async def setup(self, ctx: PluginContext[Any]) -> None:
        """Register routes, event handlers, services and tasks through `ctx`."""

    async def teardown(self, ctx: PluginContext[Any]) -> None:
        """Release what setup acquired outside the context (connections, files)."""

    async def health(self) -> Health:
        """Report whether the plugin can do its work; feeds `/readyz`."""
        return Health()

    async def on_config_change(self, ctx: PluginContext[Any], config: Any) -> bool:
        """Apply a new validated config in place; return False to be restarted instead."""
        return False

"""user_manager: registers users in its own table and tells the rest of the app by events.

Other plugins never import this one: they subscribe to `user.created` (id, email, name and,
with email verification on, `verification_token`) and `user.verified` (id, email).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from nexus import Plugin, PluginContext
from nexus.plugins.database import DATABASE

from .routes import build_router
from .store import UserStore

MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(BaseModel):
    """`plugins.user_manager` in nexus.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_users: int = Field(1000, ge=0, description="Registrations are refused past this many.")
    email_verification: bool = Field(
        True, description="New users start unverified and are sent a link to confirm."
    )
    verification_ttl: int = Field(
        86_400, ge=60, description="Seconds a verification link stays valid."
    )


class UserManager(Plugin):
    """Serves /api/user_manager: registration, email verification, user lookup."""

    Config = Settings

    async def setup(self, ctx: PluginContext[Settings]) -> None:
        """Migrate the users table and serve the routes."""
        database = ctx.services.get(DATABASE)
        await database.migrate(ctx.name, MIGRATIONS)
        ctx.http.include_router(build_router(ctx, UserStore(database)))

    async def on_config_change(self, ctx: PluginContext[Settings], config: Settings) -> bool:
        """Apply new limits without a restart: the routes read `ctx.config` per request."""
        return True

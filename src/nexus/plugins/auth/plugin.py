"""AuthPlugin: users, roles, tokens and API keys; authenticates every request."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from nexus import Health, Plugin, PluginContext
from nexus.plugins.auth.middleware import AuthenticationMiddleware
from nexus.plugins.auth.routes import build_router
from nexus.plugins.auth.service import AUTH, Auth
from nexus.plugins.auth.settings import AuthSettings
from nexus.plugins.auth.signing import signing_key
from nexus.plugins.auth.store import AuthStore
from nexus.plugins.auth.throttle import LoginThrottle
from nexus.plugins.database import DATABASE

MIGRATIONS: Final = Path(__file__).parent / "migrations"


class AuthPlugin(Plugin):
    """Provides AUTH, serves /api/auth and puts the caller of each request in its scope."""

    Config = AuthSettings

    def __init__(self) -> None:
        self.auth: Auth | None = None

    async def setup(self, ctx: PluginContext[AuthSettings]) -> None:
        """Check the signing key, migrate, then register the service, middleware and routes."""
        settings = ctx.config
        # Before touching anything else: production without a key must not start at all.
        key = signing_key(
            settings,
            is_production=ctx.is_production,
            data_dir=None if ctx.is_production else ctx.data_dir,
        )
        database = ctx.services.get(DATABASE)
        await database.migrate(ctx.name, MIGRATIONS)
        auth = Auth(
            settings,
            key=key,
            store=AuthStore(database.engine),
            events=ctx.events,
            logger=ctx.logger,
            throttle=_shared_throttle(settings, ctx),
        )
        await auth.load_roles()
        self.auth = auth
        ctx.services.provide(AUTH, auth)
        ctx.http.add_middleware(AuthenticationMiddleware, stage="authentication", auth=auth)
        ctx.http.include_router(build_router(auth))
        ctx.tasks.spawn(auth.watch_roles)
        if await auth.store.count_users() == 0:
            ctx.logger.warning(
                "No user accounts exist yet, so nobody can sign in. Create the first one with "
                "`nexus users create NAME --admin`."
            )

    async def teardown(self, ctx: PluginContext[AuthSettings]) -> None:
        """Forget the service instance."""
        self.auth = None

    async def health(self) -> Health:
        """Unhealthy while roles cannot be re-read from the database."""
        if self.auth is None:
            return Health.unhealthy("not started")
        problem = self.auth.health_problem
        if problem is not None:
            return Health.unhealthy(f"cannot read roles: {problem}")
        return Health.healthy()


def _shared_throttle(
    settings: AuthSettings, ctx: PluginContext[AuthSettings]
) -> LoginThrottle | None:
    """Login throttling in Redis when `redis_url` is set; None keeps it in this process."""
    if settings.redis_url is None:
        return None
    # Imported here: the redis extra is needed only when the configuration asks for Redis.
    from nexus.redis import RedisRateLimitStore

    store = RedisRateLimitStore(settings.redis_url.get_secret_value())
    ctx.on_cleanup(store.aclose)
    return LoginThrottle(
        rate=settings.login_rate,
        burst=settings.login_burst,
        ip_rate=settings.login_ip_rate,
        ip_burst=settings.login_ip_burst,
        store=store,
    )

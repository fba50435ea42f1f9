"""Choosing the redis transport in configuration: the kernel builds it, /readyz reports it."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from fastapi import APIRouter

from nexus import Event, Plugin, PluginContext
from nexus.errors import ConfigError
from nexus.kernel import Kernel
from nexus.redis import RedisTransport
from nexus.testing import build_config, create_test_app, serve
from nexus.testing.servers import RedisServer
from tests.redis.conftest import until


class Orders(Plugin):
    """Publishes order.created from a route, and records the order.* events it handles."""

    manifest = {
        "name": "orders",
        "version": "1.0.0",
        "permissions": ["events:publish:order.*", "events:subscribe:order.*"],
    }

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def setup(self, ctx: PluginContext[Any]) -> None:
        router = APIRouter()

        @router.post("/orders/{number}")
        async def create(number: int) -> dict[str, str]:
            event = await ctx.events.publish("order.created", {"number": number})
            return {"event": event.id}

        async def on_order(event: Event) -> None:
            self.seen.append(event.data)

        ctx.http.include_router(router)
        ctx.events.subscribe("order.*", on_order)


def redis_events(url: str, prefix: str, **extra: Any) -> dict[str, Any]:
    return {"transport": "redis", "redis_url": url, "redis_prefix": prefix, **extra}


async def test_configured_redis_transport_carries_plugin_events(
    own_redis: RedisServer, prefix: str
) -> None:
    """events.transport: redis puts plugins on Redis unchanged, and /readyz follows Redis."""
    orders = Orders()
    events = redis_events(own_redis.url, prefix, redis_instance_id="web-1", redis_timeout=0.5)
    app = create_test_app(plugins=[orders], config={"events": events})
    transport = app.kernel.bus.transport
    assert isinstance(transport, RedisTransport)
    assert (transport.prefix, transport.instance_id) == (prefix, "web-1")
    async with serve(app) as client:
        await transport.ready(timeout=10)
        response = await client.post("/api/orders/orders/42")
        assert response.status_code == 200
        await until(lambda: orders.seen == [{"number": 42}])
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["events"] == {"healthy": True, "detail": f"Redis at {own_redis.url}"}

        own_redis.stop()
        down = await client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["status"] == "not ready"
        assert down.json()["events"]["detail"].startswith(f"Redis at {own_redis.url} is unreach")


def test_the_redis_transport_needs_a_url() -> None:
    """transport: redis without redis_url is a configuration problem saying what to set."""
    with pytest.raises(ConfigError, match=r"events\.redis_url: .*set events\.redis_url"):
        build_config({"events": {"transport": "redis"}})


def test_redis_url_password_stays_out_of_messages() -> None:
    """The transport shows its URL with the password masked."""
    transport = RedisTransport("redis://:hunter2@127.0.0.1:1/0")
    assert transport.url == "redis://:**********@127.0.0.1:1/0"
    assert "hunter2" not in repr(transport)


def test_without_the_redis_client_the_kernel_names_the_extra() -> None:
    """Choosing the redis transport without redis-py installed says which extra to install."""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from nexus.kernel import Kernel\n"
        "from nexus.testing import build_config\n"
        "config = build_config({'events': {'transport': 'redis', "
        "'redis_url': 'redis://127.0.0.1:1/0'}})\n"
        "try:\n"
        "    Kernel(config)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'nexus-platform[redis]'" in done.stdout
    assert "events.transport is 'redis'" in done.stdout


def test_memory_transport_stays_the_default() -> None:
    """Without events.transport the kernel keeps events in the process."""
    kernel = Kernel(build_config())
    assert type(kernel.bus.transport).__name__ == "MemoryTransport"

"""Redis clients: URLs without passwords in messages, and loops that stop when cancelled."""

from __future__ import annotations

import asyncio
import sys

import pytest
from redis.asyncio import Redis

from nexus.redis import check_url, open_redis, raise_if_cancelled, redact_url
from nexus.testing.servers import RedisServer


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:**********@host:6379/0"),
        ("redis://ada:s3cret@host/1", "redis://ada:**********@host/1"),
        ("redis://ada@host", "redis://ada@host"),
        (
            "unix:///run/redis.sock?db=2&password=s3cret",
            "unix:///run/redis.sock?db=2&password=**********",
        ),
    ],
)
def test_passwords_are_masked(url: str, shown: str) -> None:
    """A URL shown in logs and errors never carries its password."""
    assert redact_url(url) == shown


def test_only_redis_urls_are_accepted() -> None:
    """check_url refuses other schemes, without echoing the password."""
    assert check_url("rediss://host:6380") == "rediss://host:6380"
    with pytest.raises(ValueError, match="is not a Redis URL") as caught:
        check_url("http://:s3cret@host")
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ValueError, match=r"Invalid Redis URL redis://:\*+@host:x"):
        open_redis("redis://:s3cret@host:x", timeout=1, who="A test")


def test_the_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, opening a client says who needs it and what to install."""
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(
        ImportError, match=r"A test needs the Redis client: pip install 'nexus-platform\[redis\]'"
    ):
        open_redis("redis://127.0.0.1", timeout=1, who="A test")


async def test_a_loop_of_commands_stops_when_cancelled(redis_server: RedisServer) -> None:
    """A loop checking raise_if_cancelled ends on cancel, even when redis-py loses it."""
    client = Redis.from_url(redis_server.url)
    try:
        for attempt in range(30):

            async def loop() -> None:
                while True:
                    await client.set("test:loop", "x", px=1000)
                    raise_if_cancelled()

            task = asyncio.create_task(loop())
            await asyncio.sleep(0.0001 * attempt)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=5)
            assert done == {task} and task.cancelled()
    finally:
        await client.aclose()


async def test_raise_if_cancelled_lets_a_running_task_go_on() -> None:
    """Outside a cancellation it does nothing."""
    raise_if_cancelled()
    assert await asyncio.create_task(asyncio.sleep(0, "done")) == "done"

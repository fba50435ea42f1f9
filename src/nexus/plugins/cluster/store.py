"""The cluster's state in Redis: the desired plugin set, change notices and instance reports.

Keys, under the configured prefix:

- `<prefix>:desired`: a hash, plugin name -> DesiredPlugin as JSON;
- `<prefix>:changes`: a pub/sub channel; each message is the name of a changed plugin;
- `<prefix>:instance:<id>`: a hash per instance (InstanceReport), expiring unless refreshed;
- `<prefix>:instances`: a sorted set of instance ids by last heartbeat, to find the reports.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import orjson

from nexus.errors import NexusError
from nexus.plugins.cluster.state import DesiredPlugin, InstanceReport
from nexus.redis import describe_error, open_redis, raise_if_cancelled, redact_url

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

logger = logging.getLogger("nexus.plugins.cluster")

# Read-modify-write of one plugin's entry, bump its generation and announce it, atomically.
# ARGV[1]: the plugin; ARGV[2]: the fields to set (JSON; "reload": true adds one to reloads).
_CHANGE: Final = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local entry = {}
if raw then
    local ok, decoded = pcall(cjson.decode, raw)
    if ok and type(decoded) == 'table' then
        entry = decoded
    end
end
for key, value in pairs(cjson.decode(ARGV[2])) do
    if key == 'reload' then
        if value == true then
            entry['reloads'] = (tonumber(entry['reloads']) or 0) + 1
        end
    else
        entry[key] = value
    end
end
entry['generation'] = (tonumber(entry['generation']) or 0) + 1
local encoded = cjson.encode(entry)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
redis.call('PUBLISH', KEYS[2], ARGV[1])
return encoded
"""


class ClusterUnavailableError(NexusError, ConnectionError):
    """The cluster's Redis could not be reached (or refused a command)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(
            f"The cluster state at {url} is unavailable: {reason}. Check that Redis runs and "
            f"is reachable from this instance."
        )


class ClusterStore:
    """Reads and writes the cluster's keys; every Redis error becomes ClusterUnavailableError."""

    def __init__(self, url: str, *, prefix: str, timeout: float) -> None:
        self.url: Final = redact_url(url)
        self.prefix: Final = prefix
        self.desired_key: Final = f"{prefix}:desired"
        self.channel: Final = f"{prefix}:changes"
        self.instances_key: Final = f"{prefix}:instances"
        self._client: Redis = open_redis(
            url, timeout=timeout, decode_responses=True, who="The cluster plugin"
        )
        self._change = self._client.register_script(_CHANGE)
        from redis.exceptions import RedisError

        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)

    def instance_key(self, instance_id: str) -> str:
        """The key of one instance's report."""
        return f"{self.prefix}:instance:{instance_id}"

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise_if_cancelled()
            raise ClusterUnavailableError(self.url, describe_error(exc)) from exc
        raise_if_cancelled()  # redis-py may have lost a cancellation: honour it here

    # -- the desired set ----------------------------------------------------------------------

    async def desired(self) -> dict[str, DesiredPlugin]:
        """Every plugin the cluster has a wish for; malformed entries are logged and skipped."""
        with self._translated():
            raw = cast(dict[str, str], await self._client.hgetall(self.desired_key))
        found: dict[str, DesiredPlugin] = {}
        for name, text in raw.items():
            try:
                found[name] = DesiredPlugin.from_json(text)
            except ValueError as exc:
                logger.warning("Ignoring the desired state of plugin %r in Redis: %s", name, exc)
        return found

    async def change(self, name: str, changes: Mapping[str, Any]) -> DesiredPlugin:
        """Set fields of `name`'s entry (`reload=True` asks for one more reload) and announce it."""
        patch = orjson.dumps({**changes, "updated_at": time.time()})
        with self._translated():
            encoded = await self._change(keys=[self.desired_key, self.channel], args=[name, patch])
        return DesiredPlugin.from_json(encoded)

    async def forget(self, name: str) -> bool:
        """Drop the cluster's wish for `name` (instances keep what they run); announce it."""
        with self._translated():
            removed = await self._client.hdel(self.desired_key, name)
            if removed:
                await self._client.publish(self.channel, name)
        return bool(removed)

    @contextlib.asynccontextmanager
    async def changes(self) -> AsyncIterator[PubSub]:
        """A subscription to change notices; read it with `get_message(timeout=...)`."""
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            with self._translated():
                await pubsub.subscribe(self.channel)
            yield pubsub
        finally:
            with contextlib.suppress(*self._errors):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """What the client raises when Redis fails."""
        return self._errors

    # -- instance reports ---------------------------------------------------------------------

    async def write_report(self, report: InstanceReport, *, ttl: float) -> None:
        """Store this instance's report for `ttl` seconds and list it among the instances."""
        key = self.instance_key(report.id)
        with self._translated():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                # redis-py's mapping type has invariant keys that no dict[str, str] matches.
                pipe.hset(key, mapping=cast(Mapping[Any, Any], report.to_fields()))
                pipe.pexpire(key, max(1, round(ttl * 1000)))
                pipe.zadd(self.instances_key, {report.id: report.heartbeat_at.timestamp()})
                await pipe.execute()

    async def remove_report(self, instance_id: str) -> None:
        """Withdraw an instance's report at once (it is stopping)."""
        with self._translated():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self.instance_key(instance_id))
                pipe.zrem(self.instances_key, instance_id)
                await pipe.execute()

    async def reports(self) -> list[InstanceReport]:
        """The reports of every instance whose report has not expired, by id."""
        with self._translated():
            ids = cast(list[str], await self._client.zrange(self.instances_key, 0, -1))
            if not ids:
                return []
            async with self._client.pipeline(transaction=False) as pipe:
                for instance_id in ids:
                    pipe.hgetall(self.instance_key(instance_id))
                hashes: list[dict[str, str]] = await pipe.execute()
            pairs = list(zip(ids, hashes, strict=True))
            gone = [instance_id for instance_id, fields in pairs if not fields]
            if gone:
                await self._client.zrem(self.instances_key, *gone)
        found = []
        for instance_id, fields in pairs:
            if not fields:
                continue
            try:
                found.append(InstanceReport.from_fields(fields))
            except ValueError as exc:
                logger.warning("Ignoring the report of instance %r: %s", instance_id, exc)
        return sorted(found, key=lambda report: report.id)

    async def ping(self) -> None:
        """Return if Redis answers."""
        with self._translated():
            await self._client.ping()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

"""RedisTransport: the event bus across processes, on Redis Streams and consumer groups.

Layout (with the default prefix `nexus:events`):

- `nexus:events:stream:<segment>`: one stream per first topic segment (`user.created` goes to
  `...:stream:user`), trimmed with `XADD MAXLEN ~ maxlen`. A subscription reads only the
  streams its pattern can match, so a plugin listening to `user.*` never reads, filters and
  acknowledges the traffic of `metrics.*`, and a chatty prefix cannot trim a quiet one's
  unread entries away. Order is kept within a stream, which is all one publisher can rely on.
- `nexus:events:streams`: the set of segments in use, for patterns starting with a wildcard.
- `nexus:events:dead`: dead letters (the entry's fields plus the error), trimmed like streams.

Publishing: concurrent `publish` calls queue their events; one writer task appends each burst
(up to `batch` events) with one Lua script call (XADD per event, then one XTRIM per stream),
so a burst costs one round trip and little packing; every publish returns once its own entry
is written, or raises TransportError. Bursts are written one after another: publish order
is kept.

A `shared` subscription is a consumer group named by its `Subscriber.key`
(`<owner>:<pattern>:<handler qualname>`) on each of its streams, with this instance's id as
the consumer: each event is handled once per subscription across the cluster. A `broadcast`
subscription reads with plain XREAD from the last id it saw: every instance handles every
event, and nothing is left in Redis when the instance stops.

Delivery is at least once: an entry is acknowledged only when its handler finished (after the
bus's retries) or gave up (then it is also written to the dead-letter stream). Entries a dead
consumer left unacknowledged are claimed by a live one after `claim_idle` seconds (XAUTOCLAIM)
and handed in again with `Event.attempt` > 1; past `max_deliveries` they are dead-lettered
without being handled. The envelope's `id` is the same on every delivery: the idempotency key.

The writer, the acker and the readers (`_readers`) call `raise_if_cancelled()` on each turn and
before handling a Redis error: redis-py can lose a cancellation that arrives during a command,
and `close()` waits for every one of these tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from nexus.errors import EventError, TransportError
from nexus.kernel.events import DeadLetter, Deliver, Event, Subscriber
from nexus.kernel.plugin import Health
from nexus.redis import _codec
from nexus.redis._readers import BroadcastReader, GroupReader, Reader, parse_id
from nexus.redis.client import (
    REDIS_EXTRA,
    check_url,
    describe_error,
    open_redis,
    raise_if_cancelled,
    redact_url,
    unreachable_errors,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from nexus.kernel.config import EventSettings

__all__ = ["RedisTransport"]

logger = logging.getLogger("nexus.redis")

_REGISTER_EVERY: Final = 10.0  # seconds between SADDs of a segment to the registry
# Appends a burst of events in one command: far less to pack and parse per event than a
# pipeline of XADDs. KEYS: the streams, then the registry. ARGV: maxlen, the number of segments
# to register, those segments, then (stream number, topic, envelope) per event, in order.
# Returns each entry's id, or "!<error>" for an event Redis refused.
_APPEND: Final = """
local nseg = tonumber(ARGV[2])
if nseg > 0 then
    redis.call('SADD', KEYS[#KEYS], unpack(ARGV, 3, 2 + nseg))
end
local ids, n = {}, 0
for i = 3 + nseg, #ARGV, 3 do
    n = n + 1
    local id = redis.pcall('XADD', KEYS[tonumber(ARGV[i])], '*', 'type', ARGV[i + 1],
                           'event', ARGV[i + 2])
    if type(id) == 'table' and id.err then
        id = '!' .. id.err
    end
    ids[n] = id
end
for k = 1, #KEYS - 1 do
    redis.pcall('XTRIM', KEYS[k], 'MAXLEN', '~', ARGV[1])
end
return ids
"""
_PUBLISHED_MEMORY: Final = 10_000  # event id -> entry id, for publish_and_wait
_ACK_CHUNK: Final = 1000  # ids per XACK command


class RedisTransport:
    """Carry events between processes through Redis Streams (see the module docstring).

    Args:
        url: `redis://[[user]:password@]host[:port][/db]`, `rediss://...` or `unix://...`.
        prefix: the first part of every key, so several applications can share a database.
        maxlen: entries kept per stream (approximately: Redis trims whole nodes).
        batch: entries per read, per acknowledgement and per write pipeline.
        block: seconds a read waits for new entries before it looks around (claims, health).
        claim_idle: seconds an entry may stay unacknowledged by a consumer that is not seen
            alive before another instance takes it over. Live consumers renew their entries.
        max_deliveries: deliveries of one entry to a subscription before it is dead-lettered
            unhandled (its consumers kept dying while handling it).
        timeout: seconds to connect and to wait for each answer.
        instance_id: this process's consumer name; default `<host>-<pid>-<random>`.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "nexus:events",
        maxlen: int = 100_000,
        batch: int = 100,
        block: float = 1.0,
        claim_idle: float = 60.0,
        max_deliveries: int = 5,
        timeout: float = 2.0,
        instance_id: str | None = None,
    ) -> None:
        problems = [
            f"{name} must be {rule}, got {value!r}"
            for name, value, rule, ok in (
                ("prefix", prefix, "a name without spaces", bool(prefix) and " " not in prefix),
                ("maxlen", maxlen, "at least 1", maxlen >= 1),
                ("batch", batch, "at least 1", batch >= 1),
                ("block", block, "positive", block > 0),
                ("claim_idle", claim_idle, "positive", claim_idle > 0),
                ("max_deliveries", max_deliveries, "at least 1", max_deliveries >= 1),
                ("timeout", timeout, "positive", timeout > 0),
                ("instance_id", instance_id, "a name without spaces", instance_id != ""),
            )
            if not ok
        ]
        if problems:
            raise ValueError(f"Invalid RedisTransport settings: {'; '.join(problems)}.")
        self.url: Final = redact_url(url)
        self.prefix: Final = prefix
        self.maxlen, self.batch, self.block = maxlen, batch, block
        self.claim_idle, self.max_deliveries, self.timeout = claim_idle, max_deliveries, timeout
        self.instance_id: Final = (
            instance_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.registry: Final = f"{prefix}:streams"
        self.dead_stream: Final = f"{prefix}:dead"
        try:
            from redis.exceptions import ResponseError
        except ImportError as exc:
            raise ImportError(
                f"The redis event transport needs the Redis client: {REDIS_EXTRA}"
            ) from exc
        self._secret_url: Final = check_url(url)
        #: Errors that mean Redis could not be reached or did not answer in time.
        self.unreachable: Final = unreachable_errors()
        #: What Redis answers when it refuses a command (NOGROUP, BUSYGROUP, WRONGTYPE...).
        self.refused: Final[type[Exception]] = ResponseError
        self._client: Redis | None = None
        self._append: Any = None  # the _APPEND script, once started
        self._reader_client: Redis | None = None
        self._readers: dict[Subscriber, Reader] = {}
        self._stopping: set[Reader] = set()  # detached, their tasks not finished yet
        self.groups: set[tuple[str, str]] = set()  # (stream, group) this instance consumed in
        self._stream_of: dict[str, str] = {}  # topic -> stream key
        self._registered: dict[str, float] = {}  # stream -> when last added to the registry
        self._published: dict[str, tuple[str, bytes]] = {}  # event id -> (stream, entry id)
        self._outbox: list[tuple[str, bytes, asyncio.Future[bytes], Event]] = []
        self._acks: dict[tuple[str, str], list[bytes]] = {}
        self._dead: list[dict[bytes, bytes]] = []
        self._wake_writer: asyncio.Future[None] | None = None
        self._wake_acker: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._failure: str | None = None  # why Redis was last unreachable, until it answers
        self.is_closed = False

    @classmethod
    def from_settings(cls, settings: EventSettings) -> RedisTransport:
        """A transport configured by the `events.redis_*` settings."""
        if settings.redis_url is None:
            raise EventError("The redis transport needs events.redis_url.")
        return cls(
            settings.redis_url.get_secret_value(),
            prefix=settings.redis_prefix,
            maxlen=settings.redis_maxlen,
            batch=settings.redis_batch,
            block=settings.redis_block,
            claim_idle=settings.redis_claim_idle,
            max_deliveries=settings.redis_max_deliveries,
            timeout=settings.redis_timeout,
            instance_id=settings.redis_instance_id,
        )

    def __repr__(self) -> str:
        return f"<RedisTransport {self.url} prefix={self.prefix!r} id={self.instance_id!r}>"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        """Connect (lazily: an unreachable server is logged, then waited for) and start writing."""
        if self.is_closed:
            raise TransportError("This RedisTransport was closed; create a new one.")
        if self._client is not None:
            return
        who = "The redis event transport"
        self._client = open_redis(self._secret_url, timeout=self.timeout, who=who)
        self._append = self._client.register_script(_APPEND)
        # Blocking reads hold their connection for up to `block` seconds: a pool of their own,
        # whose answers may take that long.
        self._reader_client = open_redis(
            self._secret_url, timeout=self.timeout + self.block, who=who
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write_loop(), name="nexus.redis:writer"),
            loop.create_task(self._ack_loop(), name="nexus.redis:acker"),
        ]
        try:
            await self._client.ping()
        except self.unreachable as exc:
            raise_if_cancelled()
            self.disconnected(exc)

    async def close(self) -> None:
        """Stop reading, acknowledge what was handled, leave the groups tidy, disconnect."""
        if self.is_closed:
            return
        self.is_closed = True
        readers = [*self._readers.values(), *self._stopping]
        self._readers.clear()
        for reader in readers:
            reader.stop()
        await asyncio.gather(*(reader.wait() for reader in readers))
        self._stopping.clear()
        client = self._client
        if client is None:
            return
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # best effort: Redis may be gone
            async with asyncio.timeout(self.timeout):
                await self._flush_acks()
                await self._forget_consumer()
        for _, _, future, event in self._outbox:
            if not future.done():
                future.set_exception(self._closed_error(event))
        self._outbox.clear()
        await self.reader_client.aclose()
        await client.aclose()

    # redis-py types its answers as unions over protocol versions and decode settings; these
    # clients speak RESP2 and answer bytes, which the code relies on, so they are Any here.

    @property
    def client(self) -> Any:
        """The redis-py client for short commands (bytes in, bytes out)."""
        if self._client is None:
            raise TransportError(
                "The redis transport is not started: start the EventBus first "
                "(`await bus.start()` or `async with bus:`)."
            )
        return self._client

    @property
    def reader_client(self) -> Any:
        """The client for blocking reads (its connections wait up to `block` seconds)."""
        if self._reader_client is None:
            raise TransportError("The redis transport is not started.")
        return self._reader_client

    # -- health ------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """Whether the last command (or read) reached Redis."""
        return self._failure is None

    async def health(self) -> Health:
        """Ping Redis; unhealthy if it does not answer or a subscription is still reconnecting."""
        if self.is_closed or self._client is None:
            return Health.unhealthy(f"the redis transport to {self.url} is not running")
        errors: tuple[type[BaseException], ...] = (*self.unreachable, TimeoutError)
        try:
            async with asyncio.timeout(self.timeout):
                await self._client.ping()
        except errors as exc:
            raise_if_cancelled()
            self.disconnected(exc)
            return Health.unhealthy(f"Redis at {self.url} is unreachable: {describe_error(exc)}")
        waiting = sorted(r.subscriber.key for r in self._readers.values() if r.failure)
        if waiting:
            return Health.unhealthy(
                f"Redis at {self.url} answers, but {len(waiting)} subscription(s) are still "
                f"reconnecting: {', '.join(waiting)}",
            )
        self.connected()
        return Health.healthy(
            f"Redis at {self.url}", instance=self.instance_id, subscriptions=len(self._readers)
        )

    def disconnected(self, exc: BaseException) -> None:
        """Note that Redis could not be reached (logged once per outage)."""
        if self._failure is None:
            logger.warning(
                "Redis at %s is unreachable (%s): events cannot be published or received "
                "until it is back; retrying",
                self.url,
                describe_error(exc),
            )
            self._registered.clear()  # a restarted server has lost the registry
        self._failure = describe_error(exc)

    def connected(self) -> None:
        """Note that Redis answered."""
        if self._failure is not None:
            self._failure = None
            logger.info("Redis at %s is reachable again", self.url)

    # -- publishing --------------------------------------------------------------------------

    def stream(self, topic: str) -> str:
        """The stream key that carries `topic`."""
        key = self._stream_of.get(topic)
        if key is None:
            key = self.stream_of_segment(topic.partition(".")[0])
            if len(self._stream_of) >= 4096:
                self._stream_of.clear()
            self._stream_of[topic] = key
        return key

    def stream_of_segment(self, segment: str) -> str:
        """The stream key for topics whose first segment is `segment`."""
        return f"{self.prefix}:stream:{segment}"

    async def publish(self, event: Event) -> None:
        """Append `event` to its stream; returns once Redis has it, else raises TransportError.

        Concurrent publishes are written together, in order, in one pipeline.
        """
        if self.is_closed or self._client is None:
            raise self._closed_error(event)
        body = _codec.encode(event)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._outbox.append((self.stream(event.type), body, future, event))
        wake = self._wake_writer
        if wake is not None and not wake.done():
            wake.set_result(None)
        await future

    async def _write_loop(self) -> None:
        # One writer, one pipeline at a time: events keep their publish order, and a burst of
        # concurrent publishes costs one round trip per batch instead of one each.
        loop = asyncio.get_running_loop()
        while True:
            raise_if_cancelled()
            if not self._outbox:
                self._wake_writer = loop.create_future()
                await self._wake_writer
                self._wake_writer = None
            batch = self._outbox[: self.batch]
            del self._outbox[: self.batch]
            try:
                await self._write(batch)
            except BaseException:
                for _, _, future, event in batch:
                    if not future.done():
                        future.set_exception(self._closed_error(event))
                raise

    async def _write(self, batch: list[tuple[str, bytes, asyncio.Future[bytes], Event]]) -> None:
        now = time.monotonic()
        numbers: dict[str, bytes] = {}  # stream -> its number among the script's KEYS
        registered = self._registered
        segments = []
        args: list[bytes | int] = [self.maxlen, 0]
        for stream, body, _, event in batch:
            number = numbers.get(stream)
            if number is None:
                number = numbers[stream] = str(len(numbers) + 1).encode()
                if now - registered.get(stream, -_REGISTER_EVERY) >= _REGISTER_EVERY:
                    registered[stream] = now
                    segments.append(stream.rpartition(":")[2].encode())
            args += (number, event.type.encode(), body)
        args[1] = len(segments)
        args[2:2] = segments
        results: list[Any]
        try:
            if len(batch) == 1 and not segments:
                stream, body, _, event = batch[0]
                fields = {_codec.TYPE: event.type.encode(), _codec.BODY: body}
                results = [await self.client.xadd(stream, fields, maxlen=self.maxlen)]
            else:
                # One XTRIM per stream and burst, rather than MAXLEN on every XADD: a stream
                # overshoots its bound by one burst at most.
                results = await self._append(keys=[*numbers, self.registry], args=args)
        except self.unreachable as exc:
            raise_if_cancelled()  # the write loop fails the batch as closed
            self.disconnected(exc)
            for _, _, future, event in batch:
                if not future.done():
                    future.set_exception(self._unreachable_error(event, exc))
            return
        except self.refused as exc:  # the whole command failed, e.g. a READONLY replica
            results = [exc] * len(batch)
        self.connected()
        published = self._published
        for (stream, _, future, event), result in zip(batch, results, strict=True):
            if isinstance(result, Exception) or result[:1] == b"!":
                refusal = (
                    describe_error(result)
                    if isinstance(result, Exception)
                    else result[1:].decode(errors="replace")
                )
                error = TransportError(
                    f"Could not publish event {event.type!r} ({event.id}): Redis at {self.url} "
                    f"refused to append it to {stream!r}: {refusal}."
                )
                if not future.done():
                    future.set_exception(error)
                continue
            published[event.id] = (stream, result)
            if not future.done():
                future.set_result(result)
        while len(published) > _PUBLISHED_MEMORY:
            del published[next(iter(published))]

    def _unreachable_error(self, event: Event, exc: BaseException) -> TransportError:
        return TransportError(
            f"Could not publish event {event.type!r} ({event.id}): Redis at {self.url} is "
            f"unreachable ({describe_error(exc)}). The event was not written; publish it again "
            f"once Redis is back."
        )

    def _closed_error(self, event: Event) -> TransportError:
        return TransportError(
            f"Could not publish event {event.type!r} ({event.id}): the redis transport to "
            f"{self.url} is {'closed' if self.is_closed else 'not started'}."
        )

    # -- subscriptions -----------------------------------------------------------------------

    def attach(self, subscriber: Subscriber) -> Callable[[], None]:
        """Start reading for `subscriber` (a consumer group, or XREAD when broadcast)."""
        if self.is_closed:
            raise TransportError("The redis transport is closed.")
        reader: Reader = (
            GroupReader(self, subscriber)
            if subscriber.mode == "shared"
            else BroadcastReader(self, subscriber)
        )
        self._readers[subscriber] = reader
        reader.start()

        def detach() -> None:
            if self._readers.get(subscriber) is reader:
                del self._readers[subscriber]
            reader.stop()
            if not reader.is_done:
                self._stopping.add(reader)
                reader.on_done(self._stopping.discard)

        return detach

    async def ready(self, timeout: float | None = None) -> None:
        """Wait until every attached subscription reads its streams (its group exists).

        A new shared subscription's group starts at the end of the stream, so events published
        before it is ready are not handed to it; once the group exists, it survives restarts.
        Raises TimeoutError after `timeout` seconds (Redis unreachable, for example).
        """
        async with asyncio.timeout(timeout):
            for reader in list(self._readers.values()):
                await reader.prepared.wait()

    async def acknowledged(self, event: Event, subscriber: Subscriber) -> bool:
        """Whether `subscriber`'s group has read and acknowledged `event` (published here)."""
        where = self._published.get(event.id)
        if where is None or subscriber.mode != "shared":
            return False
        stream, entry_id = where
        client = self.client
        try:
            groups = await client.xinfo_groups(stream)
            group = next((g for g in groups if g["name"] == subscriber.key.encode()), None)
            if group is None:
                return True  # no group: nobody will ever handle it
            if parse_id(group["last-delivered-id"]) < parse_id(entry_id):
                return False
            pending = await client.xpending_range(stream, subscriber.key, entry_id, entry_id, 1)
        except self.unreachable as exc:
            raise_if_cancelled()
            self.disconnected(exc)
            raise TransportError(
                f"Redis at {self.url} is unreachable: {describe_error(exc)}"
            ) from exc
        except self.refused:
            raise_if_cancelled()
            return True  # the stream or group is gone (a restarted server)
        raise_if_cancelled()  # the bus asks in a loop until the answer is True
        return not pending

    # -- acknowledgements and dead letters ---------------------------------------------------

    def ack(self, stream: str, group: str, entry_id: bytes) -> None:
        """Acknowledge an entry soon, together with others."""
        key = (stream, group)
        ids = self._acks.get(key)
        if ids is None:
            ids = self._acks[key] = []
        ids.append(entry_id)
        wake = self._wake_acker
        if wake is not None and not wake.done():
            wake.set_result(None)

    def dead_letter(
        self,
        letter: DeadLetter,
        subscriber: Subscriber,
        entry: tuple[str, str, bytes] | None = None,
    ) -> None:
        """Append `letter` to the dead-letter stream, then acknowledge `entry`, if given."""
        self._dead.append(
            _codec.dead_letter_fields(
                letter.event,
                letter=letter.id,
                subscriber=subscriber.key,
                pattern=letter.pattern,
                error=letter.error,
                traceback=letter.traceback[-4000:],
                attempts=letter.attempts,
                instance=self.instance_id,
                time=letter.time,
            )
        )
        if entry is not None:
            self.ack(*entry)  # flushed after the dead letter, in the same pipeline
        else:
            self._wake_acks()

    def _wake_acks(self) -> None:
        wake = self._wake_acker
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _ack_loop(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            raise_if_cancelled()
            if not self._acks and not self._dead:
                self._wake_acker = loop.create_future()
                await self._wake_acker
                self._wake_acker = None
            try:
                await self._flush_acks()
            except self.unreachable as exc:
                raise_if_cancelled()
                self.disconnected(exc)
                await asyncio.sleep(delay)  # they were put back: try again once Redis is back
                delay = min(delay * 2, 2.0)
            else:
                delay = 0.05

    async def _flush_acks(self) -> None:
        acks, self._acks = self._acks, {}
        dead, self._dead = self._dead, []
        if not acks and not dead:
            return
        pipe = self.client.pipeline(transaction=False)
        for fields in dead:
            pipe.xadd(self.dead_stream, fields, maxlen=self.maxlen)
        for (stream, group), ids in acks.items():
            for start in range(0, len(ids), _ACK_CHUNK):
                pipe.xack(stream, group, *ids[start : start + _ACK_CHUNK])
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException:  # unreachable, or cancelled: keep them for the next flush
            self._dead[:0] = dead
            for key, ids in acks.items():
                self._acks.setdefault(key, [])[:0] = ids
            raise
        self.connected()
        for result in results:
            if isinstance(result, Exception):
                logger.error("Redis at %s refused an acknowledgement: %s", self.url, result)

    async def _forget_consumer(self) -> None:
        # A stopping instance removes its consumer from each group, unless it still holds
        # entries: those wait there for another instance to claim them.
        client = self.client
        me = self.instance_id.encode()
        for stream, group in sorted(self.groups):
            raise_if_cancelled()  # close() bounds this with a timeout, which cancels
            with contextlib.suppress(self.refused):
                consumers = await client.xinfo_consumers(stream, group)
                if any(c["name"] == me and c["pending"] == 0 for c in consumers):
                    await client.xgroup_delconsumer(stream, group, self.instance_id)

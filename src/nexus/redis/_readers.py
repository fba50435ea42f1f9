"""The reading side of the redis transport: one reader task per subscription.

A reader keeps at most `limit` entries in flight (read, not yet settled by the bus), so a slow
handler leaves the rest of the stream to other instances. Every `claim_idle / 3` seconds it
renews its in-flight entries (XCLAIM JUSTID resets their idle time, so a live but slow
consumer keeps them) and, for a shared group, claims what dead consumers left (XAUTOCLAIM).
On connection errors it backs off (50 ms doubling to 2 s) and carries on where it was.

Every loop calls `raise_if_cancelled()` on each turn and before handling a Redis error:
redis-py can lose a cancellation (or turn it into a ConnectionError), and a reader that
carried on would hold `RedisTransport.close()` forever.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from nexus.kernel.events import DeadLetter, Receipt, Subscriber
from nexus.redis import _codec
from nexus.redis.client import describe_error, raise_if_cancelled

if TYPE_CHECKING:
    from nexus.redis.transport import RedisTransport

logger = logging.getLogger("nexus.redis")

_BACKOFF_FIRST: Final = 0.05
_BACKOFF_LAST: Final = 2.0
_DISCOVER_EVERY: Final = 1.0  # seconds between registry reads for wildcard-first patterns
_PRUNE_EVERY: Final = 60  # periodic rounds between looks for long-gone consumers
_MATCH_CACHE: Final = 1024


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry id (`<ms>-<seq>`) as a comparable pair."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class Entry(Receipt):
    """One stream entry handed to the bus: settles it with its reader."""

    __slots__ = ("entry_id", "reader", "stream")

    def __init__(self, reader: Reader, stream: str, entry_id: bytes) -> None:
        self.reader, self.stream, self.entry_id = reader, stream, entry_id

    def handled(self) -> None:
        self.reader.settle(self.stream, self.entry_id)

    def dead_lettered(self, letter: DeadLetter) -> None:
        self.reader.settle(self.stream, self.entry_id, letter)

    def dropped(self) -> None:
        self.reader.release(self.entry_id)

    # The worker calls these for every event: straight to the reader, one call less.

    def finish(self, sub: object) -> None:
        self.reader.settle(self.stream, self.entry_id)

    def drop(self, sub: object) -> None:
        self.reader.release(self.entry_id)


class Reader:
    """Reads entries for one subscription and hands the matching ones to the bus."""

    group: str = ""

    def __init__(self, transport: RedisTransport, subscriber: Subscriber) -> None:
        self.transport, self.subscriber = transport, subscriber
        self.limit = max(1, min(subscriber.capacity, 2 * transport.batch))
        self.low = self.limit - max(1, min(transport.batch, self.limit) // 2)
        self.inflight: dict[bytes, str] = {}  # entry id -> stream, read but not settled
        self.streams: list[str] = []
        self.failure: str | None = None  # set while reconnecting
        self.prepared = asyncio.Event()  # set once it reads: later events reach it
        self._wildcard = subscriber.pattern.partition(".")[0] in ("*", "**")
        self._known: set[str] = set()
        self._matches: dict[str, bool] = {}
        self._room: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._interval = min(transport.claim_idle / 3, 5.0)
        if self._wildcard:
            self._interval = min(self._interval, _DISCOVER_EVERY)
        self._rounds = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"nexus.redis:{self.subscriber.key}"
        )

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    @property
    def is_done(self) -> bool:
        return self._task is None or self._task.done()

    def on_done(self, callback: Callable[[Reader], object]) -> None:
        if self._task is not None:
            self._task.add_done_callback(lambda _: callback(self))

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        transport = self.transport
        delay = _BACKOFF_FIRST
        due = 0.0
        while self.subscriber.is_active:
            raise_if_cancelled()
            try:
                if not self.streams or self._wildcard:
                    await self._discover()
                await self.prepare()
                self.prepared.set()
                while self.subscriber.is_active:
                    raise_if_cancelled()
                    now = time.monotonic()
                    if now >= due:
                        await self._periodic()
                        due = time.monotonic() + self._interval
                    if len(self.inflight) > self.low:
                        await self._wait_for_room(due - time.monotonic())
                        continue
                    block = max(1, int(min(transport.block, due - now) * 1000))
                    await self.read(min(transport.batch, self.limit - len(self.inflight)), block)
                    if self.failure is not None:
                        self.failure = None
                        transport.connected()
                    delay = _BACKOFF_FIRST
            except asyncio.CancelledError:
                raise
            except transport.unreachable as exc:
                raise_if_cancelled()  # it may have been a cancellation that redis-py turned
                self.failure = describe_error(exc)
                transport.disconnected(exc)
            except transport.refused as exc:
                if "NOGROUP" in str(exc):  # the server restarted empty, or the group was deleted
                    self.lost_groups()
                    continue
                self.failure = describe_error(exc)
                logger.error(
                    "Redis at %s refused a read for %s: %s", transport.url, self.subscriber, exc
                )
            except Exception:  # a bug here must not end the subscription's deliveries
                raise_if_cancelled()
                self.failure = "unexpected error"
                logger.exception("The redis reader of %s failed; restarting it", self.subscriber)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _BACKOFF_LAST)

    async def _periodic(self) -> None:
        self._rounds += 1
        if self._wildcard:
            await self._discover()
            await self.prepare()
        await self.renew()

    async def _wait_for_room(self, patience: float) -> None:
        self._room = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(max(patience, 0.0)):
                await self._room
        except TimeoutError:
            pass
        finally:
            self._room = None

    # -- streams -----------------------------------------------------------------------------

    async def _discover(self) -> None:
        """Find the streams this pattern can match (all known ones for `*.x` and `**`)."""
        transport = self.transport
        if not self._wildcard:
            segment = self.subscriber.pattern.partition(".")[0]
            self.streams = [transport.stream_of_segment(segment)]
            return
        segments = await transport.client.smembers(transport.registry)
        streams = sorted(transport.stream_of_segment(s.decode()) for s in segments)
        if not streams:  # nothing published yet: wait on a stream of the registry's own
            streams = [transport.stream_of_segment("_")]
        if streams != self.streams:
            self.streams = streams

    # -- overridden by the two kinds ---------------------------------------------------------

    async def prepare(self) -> None:
        """Make sure the streams can be read (groups exist, positions known)."""

    async def read(self, count: int, block_ms: int) -> None:
        """Read up to `count` new entries, waiting up to `block_ms` for them."""

    async def renew(self) -> None:
        """The periodic work: keep in-flight entries, claim abandoned ones."""

    def lost_groups(self) -> None:
        """Redis said NOGROUP: recreate the groups."""

    def settle(self, stream: str, entry_id: bytes, letter: DeadLetter | None = None) -> None:
        """The bus is done with an entry: handled (letter None) or dead-lettered."""
        self.release(entry_id)
        if letter is not None:
            self.transport.dead_letter(letter, self.subscriber)

    def release(self, entry_id: bytes) -> None:
        """The bus is done with an entry, or dropped it unhandled (left pending, for a claim)."""
        inflight = self.inflight
        inflight.pop(entry_id, None)
        room = self._room
        if room is not None and len(inflight) <= self.low and not room.done():
            room.set_result(None)

    # -- handing entries to the bus ----------------------------------------------------------

    def matches(self, topic: str) -> bool:
        known = self._matches.get(topic)
        if known is None:
            if len(self._matches) >= _MATCH_CACHE:
                self._matches.clear()
            known = self._matches[topic] = self.subscriber.matches(topic)
        return known

    async def hand_in(
        self, stream: str, entries: list[tuple[bytes, Any]], attempts: dict[bytes, int] | None
    ) -> bool:
        """Give matching entries to the bus (others are acknowledged); False once it stops."""
        subscriber, transport, inflight = self.subscriber, self.transport, self.inflight
        offer, matches, decode = subscriber.offer, self._matches.get, _codec.decode
        for entry_id, fields in entries:
            if not fields:  # trimmed away while it was pending
                self.skip(stream, entry_id)
                continue
            try:
                topic = fields[_codec.TYPE].decode()
                if not (matches(topic) or self.matches(topic)):
                    self.skip(stream, entry_id)
                    continue
                attempt = attempts.get(entry_id, 1) if attempts is not None else 1
                event = decode(topic, fields, attempt)
            except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
                logger.error(
                    "Skipping entry %s of %s, which is not a Nexus event (%s)",
                    entry_id.decode(),
                    stream,
                    describe_error(exc),
                )
                self.skip(stream, entry_id)
                continue
            if attempt > transport.max_deliveries:
                letter = subscriber.dead_letter(
                    event,
                    f"delivered {attempt} times without being acknowledged (its consumers "
                    f"stopped while handling it); max_deliveries is {transport.max_deliveries}",
                    attempt - 1,
                )
                self.settle(stream, entry_id, letter)
                continue
            inflight[entry_id] = stream
            entry = Entry(self, stream, entry_id)
            offered = offer(event, entry)
            if offered is None:  # the mailbox is full: wait for room
                offered = await subscriber.put(event, entry)
            if not offered:
                inflight.pop(entry_id, None)
                return False
        return True

    def skip(self, stream: str, entry_id: bytes) -> None:
        """An entry this subscription does not handle."""


class GroupReader(Reader):
    """A shared subscription: a consumer group per stream, this instance as the consumer."""

    def __init__(self, transport: RedisTransport, subscriber: Subscriber) -> None:
        super().__init__(transport, subscriber)
        self.group = subscriber.key
        self._ready: set[str] = set()  # streams whose group is known to exist
        self._start_id = "$"  # the first time; "0" after a loss (entries since the restart)
        self._own_pending_read = False

    def lost_groups(self) -> None:
        self._ready.clear()
        self._start_id = "0"

    async def prepare(self) -> None:
        client = self.transport.client
        for stream in self.streams:
            if stream in self._ready:
                continue
            # A stream discovered later was created after this subscription: read it whole.
            start = "0" if stream not in self._known and self._known else self._start_id
            try:
                await client.xgroup_create(stream, self.group, id=start, mkstream=True)
            except self.transport.refused as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._ready.add(stream)
            self._known.add(stream)
            self.transport.groups.add((stream, self.group))
        if not self._own_pending_read:
            # With a stable instance id, entries this consumer held before a restart come
            # back at once instead of after claim_idle.
            for stream in self.streams:
                await self._read_history(stream)
            self._own_pending_read = True

    async def _read_history(self, stream: str) -> None:
        transport, last = self.transport, b"0"
        while len(self.inflight) < self.limit:
            response = await transport.client.xreadgroup(
                self.group,
                transport.instance_id,
                {stream: last},
                count=self.limit - len(self.inflight),
            )
            raise_if_cancelled()
            entries = response[0][1] if response else []
            if not entries:
                return
            last = entries[-1][0]
            fresh = [entry for entry in entries if entry[0] not in self.inflight]
            if fresh and not await self.hand_in(stream, fresh, await self._counts(stream, fresh)):
                return

    async def read(self, count: int, block_ms: int) -> None:
        transport = self.transport
        response = await transport.reader_client.xreadgroup(
            self.group,
            transport.instance_id,
            dict.fromkeys(self.streams, ">"),
            count=count,
            block=block_ms,
        )
        for stream, entries in response or ():
            if not await self.hand_in(stream.decode(), entries, None):
                return

    def skip(self, stream: str, entry_id: bytes) -> None:
        self.transport.ack(stream, self.group, entry_id)

    def settle(self, stream: str, entry_id: bytes, letter: DeadLetter | None = None) -> None:
        self.release(entry_id)
        if letter is None:
            self.transport.ack(stream, self.group, entry_id)
        else:  # the dead letter is written first, then the entry acknowledged
            self.transport.dead_letter(letter, self.subscriber, (stream, self.group, entry_id))

    async def renew(self) -> None:
        transport = self.transport
        client, me = transport.client, transport.instance_id
        held: dict[str, list[bytes]] = {}
        for entry_id, stream in self.inflight.items():
            held.setdefault(stream, []).append(entry_id)
        for stream, ids in held.items():
            # Resets their idle time without counting a delivery: still ours, still alive.
            await client.xclaim(stream, self.group, me, 0, ids, justid=True)
            raise_if_cancelled()
        idle_ms = int(transport.claim_idle * 1000)
        for stream in self.streams:
            cursor: bytes | str = "0-0"
            while len(self.inflight) < self.limit:
                room = self.limit - len(self.inflight)
                # [next cursor, claimed entries, and since Redis 7 the ids gone from the stream,
                # which XAUTOCLAIM has dropped from the pending list already]
                claimed = await client.xautoclaim(
                    stream, self.group, me, idle_ms, cursor, count=room
                )
                raise_if_cancelled()
                cursor, entries = claimed[0], claimed[1]
                entries = [e for e in entries if e[0] not in self.inflight]
                if entries:
                    counts = await self._counts(stream, entries)
                    if not await self.hand_in(stream, entries, counts):
                        return
                if cursor in (b"0-0", "0-0"):
                    break
        if self._rounds % _PRUNE_EVERY == 0:
            await self._prune()

    async def _counts(self, stream: str, entries: list[tuple[bytes, Any]]) -> dict[bytes, int]:
        """How often each entry has been delivered to this group (this delivery included)."""
        ids = sorted((e[0] for e in entries), key=parse_id)
        rows = await self.transport.client.xpending_range(
            stream,
            self.group,
            ids[0],
            ids[-1],
            len(ids) + len(self.inflight),
            consumername=self.transport.instance_id,
        )
        return {row["message_id"]: int(row["times_delivered"]) for row in rows}

    async def _prune(self) -> None:
        # Consumers of instances long gone, with nothing left pending: forget them.
        transport = self.transport
        horizon_ms = max(transport.claim_idle * 10, 600.0) * 1000
        for stream in self.streams:
            consumers = await transport.client.xinfo_consumers(stream, self.group)
            raise_if_cancelled()
            for consumer in consumers:
                if consumer["pending"] == 0 and consumer["idle"] > horizon_ms:
                    await transport.client.xgroup_delconsumer(stream, self.group, consumer["name"])
                    raise_if_cancelled()


class BroadcastReader(Reader):
    """A broadcast subscription: plain XREAD from the last id seen, nothing kept in Redis."""

    def __init__(self, transport: RedisTransport, subscriber: Subscriber) -> None:
        super().__init__(transport, subscriber)
        self._last: dict[str, bytes | str] = {}

    async def prepare(self) -> None:
        client = self.transport.client
        for stream in self.streams:
            if stream in self._last:
                continue
            if self._known:
                self._last[stream] = "0-0"  # a stream that appeared after we subscribed
                continue
            newest = await client.xrevrange(stream, count=1)
            self._last[stream] = newest[0][0] if newest else "0-0"
        self._known.update(self.streams)

    async def read(self, count: int, block_ms: int) -> None:
        response = await self.transport.reader_client.xread(
            {stream: self._last[stream] for stream in self.streams}, count=count, block=block_ms
        )
        for stream_key, entries in response or ():
            stream = stream_key.decode()
            self._last[stream] = entries[-1][0]
            if not await self.hand_in(stream, entries, None):
                return

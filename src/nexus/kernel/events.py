"""The event bus: publish to dotted topics, subscribe with wildcard patterns, via a Transport.

Each subscription has its own bounded mailbox and worker task (see `_mailbox`), so a slow or
failing handler delays only itself. Failures are retried, then kept as dead letters.

A plain Transport carries events between processes and hands each one back to the bus, which
queues it for every matching subscription here. A ClusterTransport (Redis Streams, in
`nexus.redis`) instead feeds each subscription itself, through a Subscriber handle, and is told
through a Receipt when the handler is done, so that it acknowledges only handled events.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import dataclasses
import datetime as dt
import itertools
import logging
import operator
import os
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Protocol, TypeAlias, TypedDict, runtime_checkable

from nexus.errors import EventError, EventQueueFullError, TransportError
from nexus.kernel._mailbox import (
    Counters,
    Outcome,
    Subscription,
    Tracked,
    Tracker,
    Watchdog,
    counters_for,
    describe,
    log_crash,
    watch_interval,
)
from nexus.kernel.correlation import correlation_id as _correlation_id
from nexus.kernel.plugin import Health
from nexus.kernel.topics import matches, validate_pattern, validate_topic

__all__ = [
    "ClusterTransport",
    "DeadLetter",
    "DeadLetterStore",
    "Deliver",
    "DeliveryReport",
    "Event",
    "EventBus",
    "Handler",
    "MemoryTransport",
    "Mode",
    "Receipt",
    "Subscriber",
    "SubscriptionInfo",
    "TopicStats",
    "Transport",
    "Unsubscribe",
    "restore_event",
]

logger = logging.getLogger("nexus.events")

Mode: TypeAlias = Literal["shared", "broadcast"]
_MODES: Final = ("shared", "broadcast")
_ROUTE_CACHE_SIZE: Final = 4096
_TOPIC_LIMIT: Final = 10_000  # distinct topics with counters of their own


@dataclass(frozen=True, slots=True)
class Event:
    """One published event: a CloudEvents-shaped envelope around `data`."""

    id: str
    type: str  # the topic
    source: str  # the publishing plugin, "nexus" for the platform
    time: float  # time.time() at publish
    data: Any
    correlation_id: str | None
    priority: int = 0
    # Deliveries of this event to the subscription handling it, this one included: 1 unless a
    # cluster transport hands it in again (its consumer died before acknowledging it). Local
    # retries do not count. The envelope's `id` stays the same: use it to handle idempotently.
    attempt: int = 1

    @property
    def redelivered(self) -> bool:
        """Whether an earlier delivery of this event may have been handled, in part or whole."""
        return self.attempt > 1

    @property
    def datetime(self) -> dt.datetime:
        """When the event was published, as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.time, dt.UTC)

    def to_dict(self) -> dict[str, Any]:
        """The envelope as a CloudEvents 1.0 dict; `correlationid`, `priority` are extensions."""
        return {
            "specversion": "1.0",
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": self.datetime.isoformat().replace("+00:00", "Z"),
            "correlationid": self.correlation_id,
            "priority": self.priority,
            "data": self.data,
        }


class _EventDraft:
    # A frozen dataclass's __init__ sets each field through object.__setattr__: ~1 us per
    # event on CPython 3.11, most of the publish budget. This twin has the same slots, so an
    # event is built with plain stores, then becomes an Event in place (a layout-compatible
    # __class__ assignment).
    __slots__ = tuple(field.name for field in dataclasses.fields(Event))


_new_object: Final = object.__new__
_wall_clock: Final = time.time
_current_correlation_id: Final = _correlation_id.get

# Event ids: a random per-process prefix, a block number and a number within the block, like
# "3f9c0a1b7e42-1a-0ff". A uuid4 per event costs microseconds and even an f-string of a counter
# is 5% of publish, so each block of ids is made by C code (`map`) from a table of suffixes.
_ID_SUFFIXES: Final = [f"{n:03x}" for n in range(4096)]
_id_prefix = secrets.token_hex(6)
_id_blocks = itertools.count(1)
_ids: Iterator[str] = iter(())


def _next_id_block() -> str:
    """Start a new block of event ids and return its first id."""
    global _ids
    block = f"{_id_prefix}-{next(_id_blocks):x}-"
    _ids = map(operator.add, itertools.repeat(block, len(_ID_SUFFIXES)), _ID_SUFFIXES)
    return next(_ids)


def _renew_ids() -> None:
    global _id_prefix, _id_blocks, _ids
    _id_prefix, _id_blocks, _ids = secrets.token_hex(6), itertools.count(1), iter(())


os.register_at_fork(after_in_child=_renew_ids)  # a forked worker must not repeat the parent's ids


def _new_event(
    topic: str, data: Any, source: str, priority: int, correlation_id: str | None
) -> Event:
    draft: Any = _new_object(_EventDraft)  # the same steps are inlined in EventBus.publish
    draft.id = next(_ids, None) or _next_id_block()
    draft.type, draft.source, draft.time, draft.data = topic, source, _wall_clock(), data
    draft.correlation_id = correlation_id if correlation_id is not None else _correlation_id.get()
    draft.priority = priority
    draft.attempt = 1
    draft.__class__ = Event
    event: Event = draft
    return event


def restore_event(
    id: str,
    type: str,
    source: str,
    time: float,
    data: Any,
    correlation_id: str | None,
    priority: int,
    attempt: int,
) -> Event:
    """`Event(...)` for transports that rebuild received events: the same, four times faster."""
    draft: Any = _new_object(_EventDraft)
    draft.id, draft.type, draft.source, draft.time = id, type, source, time
    draft.data, draft.correlation_id, draft.priority, draft.attempt = (
        data,
        correlation_id,
        priority,
        attempt,
    )
    draft.__class__ = Event
    event: Event = draft
    return event


Handler: TypeAlias = Callable[[Event], Awaitable[None]] | Callable[[Event], None]
Unsubscribe: TypeAlias = Callable[[], None]
Deliver: TypeAlias = Callable[[Event], Awaitable[None]]


class Transport(Protocol):
    """How published events reach subscribers: in memory here, Redis Streams in `nexus.redis`.

    A transport may also define `async def health(self) -> Health`, which the bus's `health()`
    (and so `/readyz`) reports.
    """

    async def start(self, deliver: Deliver) -> None:
        """Begin carrying events; call `deliver` with each event this process should handle."""

    async def publish(self, event: Event) -> None:
        """Carry `event` to every process that has matching subscribers."""

    async def close(self) -> None:
        """Stop carrying events and release connections."""


class MemoryTransport:
    """Hand each event straight to this process's subscribers (a single process)."""

    __slots__ = ("_deliver",)

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        """Deliver published events to `deliver`."""
        self._deliver = deliver

    async def publish(self, event: Event) -> None:
        """Deliver `event` now; returns once it is queued for every matching subscriber."""
        if self._deliver is None:
            raise TransportError(
                "The memory transport is not started: start the EventBus first "
                "(`await bus.start()` or `async with bus:`)."
            )
        await self._deliver(event)

    async def close(self) -> None:
        """Stop delivering."""
        self._deliver = None


@runtime_checkable
class ClusterTransport(Transport, Protocol):
    """A transport that feeds each subscription itself, such as Redis Streams consumer groups.

    The bus attaches every running subscription; the transport hands it the events it should
    handle on this instance (`shared`: once across the cluster, `broadcast`: on every
    instance) through `Subscriber.put`, and learns from the Receipt when each one is done.
    `start` is given the bus's deliver function too, which a cluster transport need not use.
    """

    def attach(self, subscriber: Subscriber) -> Callable[[], None]:
        """Start feeding `subscriber`; returns a function that stops (it must not block)."""

    async def acknowledged(self, event: Event, subscriber: Subscriber) -> bool:
        """Whether `event`, published here, is done with for `subscriber` anywhere."""

    async def health(self) -> Health:
        """Whether events can be published and received now."""


class Receipt:
    """A cluster transport's hold on one event it handed to a subscription.

    The bus calls exactly one of `handled`, `dead_lettered` or `dropped` when the subscription
    is done with the event; a subclass acknowledges it, or leaves it to be redelivered.
    """

    __slots__ = ()

    def handled(self) -> None:
        """The handler finished with the event (after retries, if any)."""

    def dead_lettered(self, letter: DeadLetter) -> None:
        """The handler gave up on the event; `letter` is in the bus's dead-letter store."""

    def dropped(self) -> None:
        """The event was not handled here: the subscription ended or the bus closed first."""

    # The subscription's worker settles what it takes from its mailbox through these.

    def finish(self, sub: object) -> None:
        self.handled()

    def fail(self, sub: object, letter: DeadLetter) -> None:
        self.dead_lettered(letter)

    def drop(self, sub: object) -> None:
        self.dropped()


class Subscriber:
    """A subscription as a cluster transport sees it: who subscribed, and a way in for events.

    `key` (`<owner>:<pattern>:<handler qualname>`) is the same on every instance and across
    restarts, so it can name a consumer group. Should one plugin subscribe two handlers with
    the same qualname to one pattern, the later ones get `#2`, `#3`... in subscription order.
    """

    __slots__ = ("_bus", "_sub", "capacity", "handler", "key", "mode", "owner", "pattern")

    def __init__(self, bus: EventBus, sub: Subscription, key: str) -> None:
        self._bus, self._sub, self.key = bus, sub, key
        self.pattern, self.owner, self.handler = sub.pattern, sub.owner, sub.handler_name
        self.mode: Mode = sub.mode
        self.capacity = sub.maxsize  # events its mailbox holds

    def __repr__(self) -> str:
        return f"<Subscriber {self.key!r} ({self.mode})>"

    @property
    def is_active(self) -> bool:
        """Whether the subscription still takes events."""
        return self._sub.is_active and not self._sub.is_closed

    def matches(self, topic: str) -> bool:
        """Whether the subscription's pattern matches `topic`."""
        return matches(self.pattern, topic)

    def offer(self, event: Event, receipt: Receipt) -> bool | None:
        """Queue `event` if there is room: True; None if full (then `put`); False if ended.

        Once this returns True, the bus settles `receipt` exactly once. Otherwise it never will.
        """
        sub = self._sub
        if not sub.is_active or sub.is_closed:
            return False
        return True if sub.put_nowait(self._item(event, receipt), event.priority) else None

    async def put(self, event: Event, receipt: Receipt) -> bool:
        """Queue `event` for the handler, waiting for room; False if the subscription ended.

        Once this returns True, the bus settles `receipt` exactly once. On False it never will.
        """
        offered = self.offer(event, receipt)
        if offered is not None:
            return offered
        item = self._item(event, receipt)
        while True:  # the transport bounds what it reads ahead, so this wait is short
            result = await self._sub.put(item, event.priority, 1.0)
            if result != "full":
                return result == "put"

    def _item(self, event: Event, receipt: Receipt) -> Tracked:
        bus = self._bus
        if event.type not in bus._topics:
            bus._counters(event.type)
        if bus._settling:
            settling = bus._settling.get(event.id)
            if settling is not None:
                return Tracked(event, settling.chain(self._sub, receipt))
        return Tracked(event, receipt)

    def dead_letter(self, event: Event, reason: str, attempts: int) -> DeadLetter:
        """Record `event` as a dead letter without handling it, e.g. after too many deliveries."""
        return self._bus._dead_letter(self._sub, event, TransportError(reason), attempts)


class _Settling:
    """publish_and_wait through a cluster transport: the local subscriptions still to settle."""

    __slots__ = ("open", "tracker")

    def __init__(self, tracker: Tracker, subs: Sequence[Subscription]) -> None:
        self.tracker, self.open = tracker, set(subs)

    def chain(self, sub: Subscription, receipt: Receipt) -> Outcome:
        return _Chained(self, receipt) if sub in self.open else receipt

    def settle(
        self, sub: Subscription, letter: DeadLetter | None = None, *, drop: bool = False
    ) -> None:
        if sub not in self.open:
            return
        self.open.discard(sub)
        if drop:
            self.tracker.drop(sub)
        elif letter is not None:
            self.tracker.fail(sub, letter)
        else:
            self.tracker.finish(sub)


class _Chained:
    """Settles a local delivery's receipt and the publish_and_wait that waits for it."""

    __slots__ = ("receipt", "settling")

    def __init__(self, settling: _Settling, receipt: Receipt) -> None:
        self.settling, self.receipt = settling, receipt

    def finish(self, sub: Subscription) -> None:
        self.receipt.handled()
        self.settling.settle(sub)

    def fail(self, sub: Subscription, letter: DeadLetter) -> None:
        self.receipt.dead_lettered(letter)
        self.settling.settle(sub, letter)

    def drop(self, sub: Subscription) -> None:
        self.receipt.dropped()
        self.settling.settle(sub, drop=True)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a subscriber gave up on after every retry (text only, no exception objects)."""

    id: str
    event: Event
    subscriber: str  # "owner:handler qualname", e.g. "audit:AuditPlugin.on_login"
    pattern: str
    error: str  # "ValueError: bad input"
    traceback: str
    attempts: int
    time: float


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What became of one event at each matching subscriber in this process."""

    event: Event
    delivered: int  # handlers that finished (after retries, if any)
    failed: int  # handlers that gave up: each one is in `dead_lettered`
    dropped: int = 0  # deliveries cancelled by an unsubscribe, a full queue or the bus closing
    dead_lettered: tuple[DeadLetter, ...] = ()


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """A snapshot of one subscription, for introspection and the admin UI."""

    pattern: str
    owner: str
    handler: str
    priority: int
    mode: Mode
    timeout: float
    retries: int
    queued: int
    delivered: int
    failed: int  # failed attempts, retries included
    timed_out: int
    dropped: int


class TopicStats(TypedDict):
    """Counters for one topic (`failed` counts attempts, so a retried failure counts again)."""

    published: int
    delivered: int
    failed: int
    timed_out: int
    dead_lettered: int
    dropped: int


class DeadLetterStore:
    """Events that handlers gave up on, newest first; keeps the newest `limit` of them."""

    __slots__ = ("_letters", "_limit", "_redeliver", "dropped")

    def __init__(
        self, limit: int, redeliver: Callable[[DeadLetter], Awaitable[DeliveryReport]]
    ) -> None:
        self._letters: dict[str, DeadLetter] = {}
        self._limit, self._redeliver = limit, redeliver
        self.dropped = 0  # letters pushed out by newer ones past the limit

    def __len__(self) -> int:
        return len(self._letters)

    def get(self, letter_id: str) -> DeadLetter | None:
        """The dead letter with this id, or None."""
        return self._letters.get(letter_id)

    async def redeliver(self, letter_id: str) -> DeliveryReport:
        """Hand the letter's event again to its subscriber alone, and wait for the outcome.

        The letter leaves the store once the event is queued; should the handler fail again, a
        new dead letter records it. Raises EventError if the subscriber is no longer subscribed.
        """
        letter = self._letters.get(letter_id)
        if letter is None:
            raise EventError(
                f"No dead letter with id {letter_id!r}: it was redelivered, discarded, or pushed "
                f"out by newer ones (the store keeps the newest {self._limit})."
            )
        return await self._redeliver(letter)

    def discard(self, letter_id: str) -> bool:
        """Forget a dead letter; returns whether it was there."""
        return self._letters.pop(letter_id, None) is not None

    def clear(self) -> int:
        """Forget every dead letter; returns how many there were."""
        count = len(self._letters)
        self._letters.clear()
        return count

    def _add(self, letter: DeadLetter) -> None:
        letters = self._letters
        letters[letter.id] = letter
        while len(letters) > self._limit:
            del letters[next(iter(letters))]
            self.dropped += 1

    def list(self) -> builtins.list[DeadLetter]:
        """Every dead letter, newest first."""
        return builtins.list(reversed(self._letters.values()))


class _Route:
    __slots__ = ("counters", "subs")

    def __init__(self, counters: Counters, subs: tuple[Subscription, ...]) -> None:
        self.counters, self.subs = counters, subs


class EventBus:
    """Deliver published events to the handlers whose patterns match their topic.

    Every subscription has a bounded mailbox and a worker task of its own. A handler that
    raises or overruns its timeout is logged, retried with exponential backoff, then
    dead-lettered; other subscribers are unaffected. Sync handlers are supported, but they run
    on the event loop and cannot be interrupted: their timeout is not enforced, and a blocking
    one stalls the whole process. Keep them short, or make them async.
    """

    def __init__(
        self,
        transport: Transport | None = None,
        *,
        queue_size: int = 1000,
        handler_timeout: float = 30.0,
        retries: int = 2,
        retry_delay: float = 0.1,
        publish_timeout: float = 5.0,
        dead_letter_limit: int = 1000,
    ) -> None:
        problems = [
            f"{name} must be {rule}, got {value!r}"
            for name, value, rule, ok in (
                ("queue_size", queue_size, "at least 1", queue_size >= 1),
                ("handler_timeout", handler_timeout, "positive", handler_timeout > 0),
                ("retries", retries, "0 or more", retries >= 0),
                ("retry_delay", retry_delay, "0 or more", retry_delay >= 0),
                ("publish_timeout", publish_timeout, "0 or more", publish_timeout >= 0),
                ("dead_letter_limit", dead_letter_limit, "0 or more", dead_letter_limit >= 0),
            )
            if not ok
        ]
        if problems:
            raise EventError(f"Invalid EventBus settings: {'; '.join(problems)}.")
        self._transport: Final = transport if transport is not None else MemoryTransport()
        # The memory transport would only call back into _deliver: publish inlines that instead.
        self._is_direct: Final = type(self._transport) is MemoryTransport
        self._cluster: Final = (
            self._transport if isinstance(self._transport, ClusterTransport) else None
        )
        self._attached: dict[Subscription, tuple[Subscriber, Callable[[], None]]] = {}
        self._settling: dict[str, _Settling] = {}  # event id -> publish_and_wait, cluster only
        self._queue_size, self._publish_timeout = queue_size, publish_timeout
        self._handler_timeout, self._retries, self._retry_delay = (
            handler_timeout,
            retries,
            retry_delay,
        )
        self._state: Literal["new", "running", "closing", "closed"] = "new"
        self._is_running = False
        self._subs: list[Subscription] = []  # higher priority first, then oldest first
        self._stopping: set[asyncio.Task[None]] = set()  # workers cancelled, not yet finished
        self._order = itertools.count()
        self._routes: dict[str, _Route] = {}  # bounded cache; a topic here is a valid topic
        self._topics: dict[str, Counters] = {}
        self._waiting: dict[str, Tracker] = {}  # event id -> tracker, until delivered here
        self._watchdog: Final = Watchdog(self._subs)
        self.dead_letters: Final = DeadLetterStore(dead_letter_limit, self._redeliver)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """Whether the bus is started and not closing."""
        return self._is_running

    @property
    def transport(self) -> Transport:
        """The transport carrying this bus's events."""
        return self._transport

    async def start(self) -> None:
        """Start the transport, the workers of existing subscriptions and the watchdog."""
        if self._state == "running":
            return
        if self._state != "new":
            raise EventError("This EventBus was closed and cannot start again; create a new one.")
        await self._transport.start(self._deliver)
        self._state, self._is_running = "running", True
        for sub in self._subs:
            self._spawn(sub)
            self._attach(sub)
        timeouts = [sub.timeout for sub in self._subs] + [self._handler_timeout]
        self._watchdog.start(watch_interval(min(timeouts)))

    async def close(self, *, grace: float = 1.0) -> None:
        """Stop taking events, give queued ones `grace` seconds to finish, cancel the rest.

        Publishing is refused from the moment close begins, also from handlers still draining.
        """
        if self._state in ("closing", "closed"):
            return
        was_running = self._state == "running"
        self._state, self._is_running = "closing", False
        try:
            if was_running:
                self._detach_all()  # a cluster transport stops reading before the workers drain
                await self._stop_workers(grace)
                await self._watchdog.stop()
        finally:
            self._detach_all()
            for sub in self._subs:
                sub.release()
            self._subs.clear()
            self._routes.clear()
            for tracker in self._waiting.values():  # published, never delivered back to us
                tracker.expect(())
            self._waiting.clear()
            for settling in self._settling.values():
                settling.open.clear()
                settling.tracker.expect(())
            self._settling.clear()
            self._state = "closed"
            if was_running:
                await self._transport.close()

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def health(self) -> Health:
        """Whether events can be published and delivered now (the transport's health)."""
        if not self._is_running:
            return Health.unhealthy(f"the event bus is {self._state}")
        check = getattr(self._transport, "health", None)
        if check is None:
            return Health.healthy(f"{type(self._transport).__name__} is running")
        health: Health = await check()
        return health

    async def _stop_workers(self, grace: float) -> None:
        me = asyncio.current_task()
        workers = {sub.task for sub in self._subs if sub.task is not None and sub.task is not me}
        for sub in self._subs:
            sub.close()  # an idle worker returns now, a busy one once its mailbox is empty
        if not workers:
            return
        _, pending = await asyncio.wait(workers, timeout=grace)
        if pending:
            for sub in self._subs:
                sub.timing_out = False  # so that each worker sees a real cancellation
            for task in pending:
                task.cancel()
            # A handler that swallows cancellation must not hold close() forever.
            await asyncio.wait(pending, timeout=grace)

    # -- publishing ------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        data: Any = None,
        *,
        source: str = "nexus",
        priority: int = 0,
        correlation_id: str | None = None,
    ) -> Event:
        """Publish an event; returns once it is queued for every matching subscriber.

        `correlation_id` defaults to the current request's. While a subscriber's queue is full,
        this waits up to `publish_timeout` seconds, then raises EventQueueFullError. Raises
        EventError for an invalid topic, and before `start()` or once `close()` has begun.
        """
        if not self._is_running:
            raise self._not_running("publish to", topic)
        if priority and priority.__class__ is not int:
            raise _bad_priority(topic, priority)
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        route.counters.published += 1
        # The hot path: _new_event and _deliver, inlined.
        draft: Any = _new_object(_EventDraft)
        draft.id = next(_ids, None) or _next_id_block()
        draft.type = topic
        draft.source = source
        draft.time = _wall_clock()
        draft.data = data
        draft.correlation_id = (
            correlation_id if correlation_id is not None else _current_correlation_id()
        )
        draft.priority = priority
        draft.attempt = 1
        draft.__class__ = Event
        event: Event = draft
        if not self._is_direct:
            await self._transport.publish(event)
            return event
        blocked: list[Subscription] | None = None
        for sub in route.subs:
            normal = sub.normal
            if priority or len(normal) >= sub.room:
                if not sub.put_nowait(event, priority):
                    blocked = [sub] if blocked is None else [*blocked, sub]
            else:
                normal.append(event)
                if sub.getter is not None:
                    sub.wake_getter()
        if blocked is not None:
            await self._wait_for_room(event, event, blocked)
        return event

    async def publish_and_wait(
        self,
        topic: str,
        data: Any = None,
        *,
        source: str = "nexus",
        priority: int = 0,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> DeliveryReport:
        """Publish, then wait until every matching handler is done with it (retries included).

        Raises TimeoutError if that takes longer than `timeout` seconds; the event stays
        published and its handlers keep going.
        """
        if not self._is_running:
            raise self._not_running("publish to", topic)
        if priority and priority.__class__ is not int:
            raise _bad_priority(topic, priority)
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        route.counters.published += 1
        event = _new_event(topic, data, source, priority, correlation_id)
        tracker = Tracker(event, asyncio.get_running_loop().create_future())
        if self._cluster is not None:
            return await self._publish_and_settle(self._cluster, tracker, route.subs, timeout)
        self._waiting[event.id] = tracker
        try:
            await self._transport.publish(event)
        except BaseException:
            self._waiting.pop(event.id, None)
            raise
        return await self._outcome(tracker, timeout)

    async def _publish_and_settle(
        self,
        cluster: ClusterTransport,
        tracker: Tracker,
        subs: tuple[Subscription, ...],
        timeout: float | None,
    ) -> DeliveryReport:
        # Broadcast subscriptions here always get the event; a shared one may see it handled by
        # another instance, which only the transport can tell (an outcome there is "delivered").
        event = tracker.event
        tracker.expect(subs)
        settling = self._settling[event.id] = _Settling(tracker, subs)
        try:
            await cluster.publish(event)
            shared = [sub for sub in subs if sub.mode == "shared"]
            watch = None
            if shared:
                watch = asyncio.get_running_loop().create_task(
                    self._watch_acknowledgements(cluster, settling, shared),
                    name=f"nexus.events:settle:{event.id}",
                )
            try:
                return await self._outcome(tracker, timeout)
            finally:
                if watch is not None:
                    watch.cancel()
        finally:
            self._settling.pop(event.id, None)

    async def _watch_acknowledgements(
        self, cluster: ClusterTransport, settling: _Settling, shared: list[Subscription]
    ) -> None:
        delay = 0.002
        while settling.open:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
            for sub in shared:
                attached = self._attached.get(sub)
                if sub not in settling.open:
                    continue
                if attached is None:  # unsubscribed meanwhile
                    settling.settle(sub, drop=True)
                    continue
                try:
                    done = await cluster.acknowledged(settling.tracker.event, attached[0])
                except TransportError:
                    continue  # the transport's health says why; keep waiting
                if done:
                    settling.settle(sub)

    async def _deliver(self, event: Event) -> None:
        """Queue `event` for this process's matching subscribers (the transport calls this)."""
        route = self._routes.get(event.type)
        if route is None:
            route = self._route(event.type)
        item: Event | Tracked = event
        if self._waiting:
            tracker = self._waiting.pop(event.id, None)
            if tracker is not None:
                tracker.expect(route.subs)
                item = Tracked(event, tracker)
        blocked = [sub for sub in route.subs if not sub.put_nowait(item, event.priority)]
        if blocked:
            await self._wait_for_room(event, item, blocked)

    def _counters(self, topic: str) -> Counters:
        counters = self._topics.get(topic)
        if counters is None:
            validate_topic(topic)
            if len(self._topics) < _TOPIC_LIMIT:
                counters = self._topics[topic] = Counters()
            else:  # topic names with ids in them must not grow memory without bound
                counters = counters_for(self._topics, topic)
        return counters

    def _route(self, topic: str) -> _Route:
        counters = self._counters(topic)
        route = _Route(counters, tuple(s for s in self._subs if matches(s.pattern, topic)))
        if len(self._routes) >= _ROUTE_CACHE_SIZE:
            del self._routes[next(iter(self._routes))]
        self._routes[topic] = route
        return route

    async def _wait_for_room(
        self, event: Event, item: Event | Tracked, blocked: list[Subscription]
    ) -> None:
        # The other subscribers have the event already; now wait for the full ones in turn.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._publish_timeout
        full: list[Subscription] = []
        for sub in blocked:
            outcome = await sub.put(item, event.priority, max(deadline - loop.time(), 0.0))
            if outcome == "put":
                continue
            sub.dropped += 1
            counters_for(self._topics, event.type).dropped += 1
            if isinstance(item, Tracked):
                item.tracker.drop(sub)
            if outcome == "full":
                full.append(sub)
        if full:
            names = ", ".join(f"{sub.name!r} (pattern {sub.pattern!r})" for sub in full)
            raise EventQueueFullError(
                f"Event {event.type!r} was not delivered to {names}: the subscriber's queue "
                f"stayed full ({self._queue_size} events) for {self._publish_timeout} s. "
                f"Raise the EventBus `queue_size`, or make the handler faster (for example, "
                f"hand slow work to a background task)."
            )

    async def _outcome(self, tracker: Tracker, limit: float | None) -> DeliveryReport:
        try:
            await asyncio.wait_for(tracker.future, limit)
        except TimeoutError:
            event, pending = tracker.event, tracker.pending
            raise TimeoutError(
                f"Event {event.type!r} ({event.id}) is published, but {len(pending)} handler(s) "
                f"did not finish within {limit} s: {', '.join(pending)}."
            ) from None
        return DeliveryReport(
            tracker.event,
            tracker.delivered,
            len(tracker.dead_letters),
            tracker.dropped,
            tuple(tracker.dead_letters),
        )

    def _not_running(self, action: str, topic: str) -> EventError:
        if self._state == "new":
            return EventError(
                f"Cannot {action} {topic!r}: the event bus is not started yet. "
                f"Call `await bus.start()` (or use `async with bus:`) first."
            )
        return EventError(
            f"Cannot {action} {topic!r}: the event bus is {self._state}. "
            f"Events can no longer be published once `close()` has begun."
        )

    # -- subscribing -----------------------------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        priority: int = 0,
        owner: str = "nexus",
        mode: Mode = "shared",
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Unsubscribe:
        """Call `handler` with each event whose topic matches `pattern`; returns unsubscribe.

        `*` matches one topic segment, `**` any number (zero included). Higher `priority`
        handlers are given each event first. `mode` matters to cluster transports: "shared"
        handles each event once per plugin across instances, "broadcast" on every instance.
        `timeout` (seconds per attempt) and `retries` default to the bus's settings.
        """
        if self._state in ("closing", "closed"):
            raise EventError(
                f"Cannot subscribe to {pattern!r}: the event bus is {self._state}. "
                f"Create a new EventBus."
            )
        validate_pattern(pattern)
        problems = []
        if not callable(handler):
            problems.append(f"the handler must be callable, got {handler!r}")
        if priority.__class__ is not int:
            problems.append(f"priority must be an integer, got {priority!r}")
        if mode not in _MODES:
            problems.append(f"mode must be 'shared' or 'broadcast', got {mode!r}")
        if timeout is not None and not timeout > 0:
            problems.append(f"timeout must be a positive number of seconds, got {timeout!r}")
        if retries is not None and not retries >= 0:
            problems.append(f"retries must be 0 or more, got {retries!r}")
        if problems:
            raise EventError(
                f"Invalid subscription to {pattern!r} by {owner!r}: {'; '.join(problems)}."
            )
        sub = Subscription(
            pattern,
            handler,
            owner=owner,
            priority=priority,
            mode=mode,
            timeout=timeout if timeout is not None else self._handler_timeout,
            retries=retries if retries is not None else self._retries,
            retry_delay=self._retry_delay,
            queue_size=self._queue_size,
            order=next(self._order),
            topics=self._topics,
            dead_letter=self._dead_letter,
        )
        self._subs.append(sub)
        self._subs.sort(key=lambda s: (-s.priority, s.order))
        self._routes.clear()
        if self._is_running:
            self._spawn(sub)
            self._attach(sub)
            if watch_interval(sub.timeout) < self._watchdog.interval:
                self._watchdog.start(watch_interval(sub.timeout))

        def unsubscribe() -> None:
            self._unsubscribe(sub)

        return unsubscribe

    def subscriptions(self, owner: str | None = None) -> list[SubscriptionInfo]:
        """Snapshots of the subscriptions (of one owner, if given), in delivery order."""
        return [
            SubscriptionInfo(
                pattern=sub.pattern,
                owner=sub.owner,
                handler=sub.handler_name,
                priority=sub.priority,
                mode=sub.mode,
                timeout=sub.timeout,
                retries=sub.retries,
                queued=len(sub),
                delivered=sub.delivered,
                failed=sub.failed,
                timed_out=sub.timed_out,
                dropped=sub.dropped,
            )
            for sub in self._subs
            if owner is None or sub.owner == owner
        ]

    @property
    def stats(self) -> dict[str, TopicStats]:
        """Counters per topic; "**" gathers the topics past the first 10,000."""
        return {
            topic: TopicStats(
                published=c.published,
                delivered=c.delivered,
                failed=c.failed,
                timed_out=c.timed_out,
                dead_lettered=c.dead_lettered,
                dropped=c.dropped,
            )
            for topic, c in self._topics.items()
        }

    def _unsubscribe(self, sub: Subscription) -> None:
        if not sub.is_active:
            return
        self._subs.remove(sub)
        self._routes.clear()
        attached = self._attached.pop(sub, None)
        if attached is not None:
            attached[1]()
        task = sub.task
        sub.release()
        try:
            me = asyncio.current_task()
        except RuntimeError:  # no running loop, so no worker is running either
            me = None
        # A handler unsubscribing itself finishes normally, then its worker finds the mailbox
        # closed and returns. Any other worker stops now.
        if task is not None and task is not me:
            task.cancel()
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until the workers of removed subscriptions have stopped.

        Unsubscribing cancels a worker, but its handler only stops at its next await; a
        plugin being stopped waits here so none of its handlers still runs during teardown.
        """
        stopping = {task for task in self._stopping if task is not asyncio.current_task()}
        if stopping:
            await asyncio.wait(stopping, timeout=timeout)

    def _attach(self, sub: Subscription) -> None:
        if self._cluster is None:
            return
        base = f"{sub.owner}:{sub.pattern}:{sub.handler_name}"
        taken = {subscriber.key for subscriber, _ in self._attached.values()}
        key, number = base, 1
        while key in taken:
            number += 1
            key = f"{base}#{number}"
        subscriber = Subscriber(self, sub, key)
        self._attached[sub] = (subscriber, self._cluster.attach(subscriber))

    def _detach_all(self) -> None:
        attached, self._attached = self._attached, {}
        for _, detach in attached.values():
            detach()

    def _spawn(self, sub: Subscription) -> None:
        # A fresh context: the worker sets the correlation id per event, and must not inherit
        # the request that happened to be current when the subscription was made.
        sub.task = asyncio.get_running_loop().create_task(
            sub.run(), name=f"nexus.events:{sub.name}", context=contextvars.Context()
        )
        sub.task.add_done_callback(log_crash)

    # -- dead letters ----------------------------------------------------------------------

    def _dead_letter(
        self, sub: Subscription, event: Event, error: BaseException, attempts: int
    ) -> DeadLetter:
        letter = DeadLetter(
            id="dl-" + (next(_ids, None) or _next_id_block()),
            event=event,
            subscriber=sub.name,
            pattern=sub.pattern,
            error=describe(error),
            traceback="".join(traceback.format_exception(error)),
            attempts=attempts,
            time=time.time(),
        )
        self.dead_letters._add(letter)
        counters_for(self._topics, event.type).dead_lettered += 1
        logger.error(
            "Handler %r of plugin %r failed on event %r (%s) after %d attempt(s), "
            "dead-lettered as %s: %s",
            sub.handler_name,
            sub.owner,
            event.type,
            event.id,
            attempts,
            letter.id,
            letter.error,
            exc_info=error,
            extra={"plugin": sub.owner, "topic": event.type, "event_id": event.id},
        )
        return letter

    async def _redeliver(self, letter: DeadLetter) -> DeliveryReport:
        event = letter.event
        if not self._is_running:
            raise self._not_running("redeliver", event.type)
        sub = next(
            (s for s in self._subs if s.name == letter.subscriber and s.pattern == letter.pattern),
            None,
        )
        if sub is None:
            raise EventError(
                f"Cannot redeliver dead letter {letter.id!r}: subscriber {letter.subscriber!r} "
                f"(pattern {letter.pattern!r}) is no longer subscribed. Subscribe the handler "
                f"again first, or drop the letter with `dead_letters.discard({letter.id!r})`."
            )
        tracker = Tracker(event, asyncio.get_running_loop().create_future())
        tracker.expect((sub,))
        item = Tracked(event, tracker)
        if not sub.put_nowait(item, event.priority):
            await self._wait_for_room(event, item, [sub])
        self.dead_letters.discard(letter.id)
        return await self._outcome(tracker, None)


def _bad_priority(topic: str, priority: object) -> EventError:
    return EventError(
        f"Cannot publish to {topic!r}: priority must be an integer (higher is handled first, "
        f"0 by default), got {priority!r}."
    )

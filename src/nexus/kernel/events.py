"""The event bus: publish to dotted topics, subscribe with wildcard patterns, via a Transport.

Each subscription has its own bounded mailbox and worker task (see `_mailbox`), so a slow or
failing handler delays only itself. Failures are retried, then kept as dead letters.

A plain Transport carries events between processes and hands each one back to the bus, which
queues it for every matching subscription here. A ClusterTransport (Redis Streams, in
`nexus.redis`) instead feeds each subscription itself, through a Subscriber handle, and is told
through a Receipt when the handler is done, so that it acknowledges only handled events.

EventBus is assembled from parts in private modules: `_dispatch` (routes and mailboxes),
`_cluster_bus` (the ClusterTransport side), `_dead_letters`; the envelope is in `_envelope`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias

from nexus.errors import EventError
from nexus.kernel import _envelope
from nexus.kernel._cluster_bus import ClusterLink, ClusterTransport, Receipt, Settling, Subscriber
from nexus.kernel._dead_letters import (
    DeadLetter,
    DeadLettering,
    DeadLetterStore,
    DeliveryReport,
    outcome,
)
from nexus.kernel._dispatch import Dispatch, Mode, Route, SubscriptionInfo, TopicStats
from nexus.kernel._envelope import Event, EventDraft, new_event, next_id_block, restore_event
from nexus.kernel._mailbox import Counters, Subscription, Tracker, Watchdog, watch_interval
from nexus.kernel._transport import Deliver, MemoryTransport, Transport
from nexus.kernel.correlation import correlation_id as _correlation_id
from nexus.kernel.plugin import Health
from nexus.kernel.topics import validate_pattern

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

_MODES: Final = ("shared", "broadcast")

_new_object: Final = object.__new__
_wall_clock: Final = time.time
_current_correlation_id: Final = _correlation_id.get

Handler: TypeAlias = Callable[[Event], Awaitable[None]] | Callable[[Event], None]
Unsubscribe: TypeAlias = Callable[[], None]


class EventBus(ClusterLink, DeadLettering, Dispatch):
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
        self._settling: dict[str, Settling] = {}  # event id -> publish_and_wait, cluster only
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
        self._routes: dict[str, Route] = {}  # bounded cache; a topic here is a valid topic
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
        # The hot path: new_event and _deliver, inlined.
        draft: Any = _new_object(EventDraft)
        draft.id = next(_envelope.ids, None) or next_id_block()
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
        event = new_event(topic, data, source, priority, correlation_id)
        tracker = Tracker(event, asyncio.get_running_loop().create_future())
        if self._cluster is not None:
            return await self._publish_and_settle(self._cluster, tracker, route.subs, timeout)
        self._waiting[event.id] = tracker
        try:
            await self._transport.publish(event)
        except BaseException:
            self._waiting.pop(event.id, None)
            raise
        return await outcome(tracker, timeout)

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

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until the workers of removed subscriptions have stopped.

        Unsubscribing cancels a worker, but its handler only stops at its next await; a
        plugin being stopped waits here so none of its handlers still runs during teardown.
        """
        stopping = {task for task in self._stopping if task is not asyncio.current_task()}
        if stopping:
            await asyncio.wait(stopping, timeout=timeout)


def _bad_priority(topic: str, priority: object) -> EventError:
    return EventError(
        f"Cannot publish to {topic!r}: priority must be an integer (higher is handled first, "
        f"0 by default), got {priority!r}."
    )

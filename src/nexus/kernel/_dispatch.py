"""How EventBus gets events into subscription mailboxes and stops their workers; its counters."""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, TypedDict

from nexus.errors import EventError, EventQueueFullError
from nexus.kernel._envelope import Event
from nexus.kernel._mailbox import Counters, Subscription, Tracked, Tracker, counters_for, log_crash
from nexus.kernel.topics import matches, validate_topic

if TYPE_CHECKING:
    from collections.abc import Callable

    from nexus.kernel._cluster_bus import Subscriber

__all__ = ["Dispatch", "Mode", "Route", "SubscriptionInfo", "TopicStats"]

Mode: TypeAlias = Literal["shared", "broadcast"]
_ROUTE_CACHE_SIZE: Final = 4096
_TOPIC_LIMIT: Final = 10_000  # distinct topics with counters of their own


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


class Route:
    """The subscriptions a topic goes to, and its counters (cached per topic)."""

    __slots__ = ("counters", "subs")

    def __init__(self, counters: Counters, subs: tuple[Subscription, ...]) -> None:
        self.counters, self.subs = counters, subs


class Dispatch:
    """EventBus's delivery into mailboxes: routes per topic, waiting for room, worker tasks."""

    if TYPE_CHECKING:  # what this part uses of the EventBus it is part of
        _state: Literal["new", "running", "closing", "closed"]
        _subs: list[Subscription]
        _stopping: set[asyncio.Task[None]]
        _routes: dict[str, Route]
        _topics: dict[str, Counters]
        _waiting: dict[str, Tracker]
        _attached: dict[Subscription, tuple[Subscriber, Callable[[], None]]]
        _queue_size: int
        _publish_timeout: float

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

    def _route(self, topic: str) -> Route:
        counters = self._counters(topic)
        route = Route(counters, tuple(s for s in self._subs if matches(s.pattern, topic)))
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

    def _spawn(self, sub: Subscription) -> None:
        # A fresh context: the worker sets the correlation id per event, and must not inherit
        # the request that happened to be current when the subscription was made.
        sub.task = asyncio.get_running_loop().create_task(
            sub.run(), name=f"nexus.events:{sub.name}", context=contextvars.Context()
        )
        sub.task.add_done_callback(log_crash)

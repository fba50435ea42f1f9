"""The bus's side of a ClusterTransport: Subscriber handles, Receipts, and settling waits.

A ClusterTransport (Redis Streams, in `nexus.redis`) feeds each subscription itself through a
Subscriber and learns through a Receipt when the handler is done, so that it acknowledges only
handled events. `ClusterLink` is the part of EventBus that attaches subscriptions and waits
for a cluster-wide outcome in `publish_and_wait`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from nexus.errors import TransportError
from nexus.kernel._dead_letters import DeliveryReport, outcome
from nexus.kernel._envelope import Event
from nexus.kernel._mailbox import Counters, Outcome, Subscription, Tracked, Tracker
from nexus.kernel._transport import Transport
from nexus.kernel.plugin import Health
from nexus.kernel.topics import matches

if TYPE_CHECKING:
    from nexus.kernel._dead_letters import DeadLetter
    from nexus.kernel._dispatch import Mode

__all__ = ["Chained", "ClusterLink", "ClusterTransport", "Receipt", "Settling", "Subscriber"]


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

    def __init__(self, bus: ClusterLink, sub: Subscription, key: str) -> None:
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


class Settling:
    """publish_and_wait through a cluster transport: the local subscriptions still to settle."""

    __slots__ = ("open", "tracker")

    def __init__(self, tracker: Tracker, subs: Sequence[Subscription]) -> None:
        self.tracker, self.open = tracker, set(subs)

    def chain(self, sub: Subscription, receipt: Receipt) -> Outcome:
        return Chained(self, receipt) if sub in self.open else receipt

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


class Chained:
    """Settles a local delivery's receipt and the publish_and_wait that waits for it."""

    __slots__ = ("receipt", "settling")

    def __init__(self, settling: Settling, receipt: Receipt) -> None:
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


class ClusterLink:
    """EventBus's side of a ClusterTransport: attaching subscriptions, settling their events."""

    if TYPE_CHECKING:  # what the link uses of the EventBus it is part of
        _attached: dict[Subscription, tuple[Subscriber, Callable[[], None]]]
        _settling: dict[str, Settling]
        _topics: dict[str, Counters]

        @property
        def _cluster(self) -> ClusterTransport | None: ...

        def _counters(self, topic: str) -> Counters: ...

        def _dead_letter(
            self, sub: Subscription, event: Event, error: BaseException, attempts: int
        ) -> DeadLetter: ...

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
        settling = self._settling[event.id] = Settling(tracker, subs)
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
                return await outcome(tracker, timeout)
            finally:
                if watch is not None:
                    watch.cancel()
        finally:
            self._settling.pop(event.id, None)

    async def _watch_acknowledgements(
        self, cluster: ClusterTransport, settling: Settling, shared: list[Subscription]
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

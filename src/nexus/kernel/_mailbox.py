"""The consumer side of the event bus: each subscription's mailbox, worker task and watchdog.

A subscription is a bounded mailbox (a FIFO per event priority, higher priorities first) plus
the worker task that feeds its handler, so one slow or failing handler delays only itself.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, cast

from nexus.kernel.correlation import correlation_id as _correlation_id

if TYPE_CHECKING:
    from nexus.kernel.events import DeadLetter, Event, Mode

logger = logging.getLogger("nexus.events")

OTHER_TOPICS = "**"  # counters key for the topics past the bus's limit on distinct topics
MIN_WATCH_INTERVAL = 0.01
MAX_WATCH_INTERVAL = 0.25

PutResult: TypeAlias = Literal["put", "full", "closed"]
DeadLetterer: TypeAlias = "Callable[[Subscription, Event, BaseException, int], DeadLetter]"


class Counters:
    """Counters for one topic (`failed` counts attempts, so a retried failure counts again)."""

    __slots__ = ("dead_lettered", "delivered", "dropped", "failed", "published", "timed_out")

    def __init__(self) -> None:
        self.published = self.delivered = self.failed = 0
        self.timed_out = self.dead_lettered = self.dropped = 0


def counters_for(topics: dict[str, Counters], topic: str) -> Counters:
    """The counters of `topic`, or the shared ones of topics past the limit."""
    counters = topics.get(topic)
    if counters is None:
        counters = topics.get(OTHER_TOPICS) or topics.setdefault(OTHER_TOPICS, Counters())
    return counters


class Outcome(Protocol):
    """Told what became of one mailbox entry: a Tracker, or a cluster transport's Receipt."""

    def finish(self, sub: Subscription) -> None:
        """The handler finished with the event."""

    def fail(self, sub: Subscription, letter: DeadLetter) -> None:
        """The handler gave up on the event, which is now the dead letter `letter`."""

    def drop(self, sub: Subscription) -> None:
        """The event was not handled: unsubscribed, cancelled, or the bus closed."""


class Tracker:
    """Follows one event to each subscriber it was queued for; resolves when all are done."""

    __slots__ = ("dead_letters", "delivered", "dropped", "event", "future", "pending")

    def __init__(self, event: Event, future: asyncio.Future[None]) -> None:
        self.event, self.future = event, future
        self.pending: list[str] = []  # subscriber names, for the message of a timed-out wait
        self.delivered = self.dropped = 0
        self.dead_letters: list[DeadLetter] = []

    def expect(self, subs: Sequence[Subscription]) -> None:
        self.pending = [sub.name for sub in subs]
        if not subs:
            self._resolve()

    def finish(self, sub: Subscription) -> None:
        self.delivered += 1
        self._done(sub)

    def fail(self, sub: Subscription, letter: DeadLetter) -> None:
        self.dead_letters.append(letter)
        self._done(sub)

    def drop(self, sub: Subscription) -> None:
        self.dropped += 1
        self._done(sub)

    def _done(self, sub: Subscription) -> None:
        self.pending.remove(sub.name)
        if not self.pending:
            self._resolve()

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class Tracked:
    """A mailbox entry for an event whose outcome someone waits for (a publisher, a transport)."""

    __slots__ = ("event", "tracker")

    def __init__(self, event: Event, tracker: Outcome) -> None:
        self.event, self.tracker = event, tracker


Item: TypeAlias = "Event | Tracked"


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Mailbox:
    """A bounded queue for one consumer, FIFO within a priority, higher priorities first.

    Priority 0 (almost every event) has a deque of its own, which the bus appends to directly
    while `len(normal) < room`; other priorities get a deque each, created on demand.
    """

    __slots__ = ("getter", "is_closed", "maxsize", "normal", "other", "putters", "room")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.room = maxsize  # how many priority-0 items fit beside the other priorities' items
        self.normal: deque[Item] = deque()
        self.other: dict[int, deque[Item]] = {}
        self.getter: asyncio.Future[None] | None = None
        self.putters: deque[asyncio.Future[None]] = deque()
        self.is_closed = False

    def __len__(self) -> int:
        return len(self.normal) + self.maxsize - self.room

    def __iter__(self) -> Iterator[Item]:
        """Queued items in delivery order."""
        for priority in sorted(self.other.keys() | {0}, reverse=True):
            yield from (self.normal if priority == 0 else self.other[priority])

    def put_nowait(self, item: Item, priority: int = 0) -> bool:
        """Append `item` unless the mailbox is full; returns whether it was added."""
        if len(self.normal) >= self.room:
            return False
        if priority:
            queue = self.other.get(priority)
            if queue is None:
                queue = self.other[priority] = deque()
            queue.append(item)
            self.room -= 1
        else:
            self.normal.append(item)
        if self.getter is not None:
            self.wake_getter()
        return True

    async def put(self, item: Item, priority: int, patience: float) -> PutResult:
        """Wait up to `patience` seconds for room, then append `item`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while True:
            if self.is_closed:
                return "closed"
            if self.put_nowait(item, priority):
                return "put"
            remaining = deadline - loop.time()
            if remaining <= 0:
                return "full"
            waiter: asyncio.Future[None] = loop.create_future()
            self.putters.append(waiter)
            timer = loop.call_later(remaining, _wake, waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.wake_putter()  # we were handed the free slot: pass it on
                raise
            finally:
                timer.cancel()
                # Woken by a `get`, it has left the line already; by the timer, not yet.
                if waiter in self.putters:
                    self.putters.remove(waiter)

    def get_nowait(self) -> Item | None:
        """Take the next item, or None if the mailbox is empty."""
        if self.other:
            item = self._take_other()
        elif self.normal:
            item = self.normal.popleft()
        else:
            return None
        if self.putters:
            self.wake_putter()
        return item

    async def get(self) -> Item | None:
        """Wait for the next item; None once the mailbox is closed and empty."""
        while True:
            item = self.get_nowait()
            if item is not None or self.is_closed:
                return item
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.getter = getter
            try:
                await getter
            finally:
                if self.getter is getter:
                    self.getter = None

    def close(self) -> None:
        """Refuse further puts; wake the consumer and any waiting producers."""
        self.is_closed = True
        self.wake_getter()
        while self.putters:
            _wake(self.putters.popleft())

    def clear(self) -> list[Item]:
        """Remove and return every queued item, in delivery order."""
        items = list(self)
        self.normal.clear()
        self.other.clear()
        self.room = self.maxsize
        return items

    def wake_getter(self) -> None:
        getter, self.getter = self.getter, None
        if getter is not None:
            _wake(getter)

    def wake_putter(self) -> None:
        putters = self.putters
        while putters:
            putter = putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return

    def _take_other(self) -> Item:
        best = max(self.other)
        if best < 0 and self.normal:
            return self.normal.popleft()
        queue = self.other[best]
        item = queue.popleft()
        if not queue:
            del self.other[best]
        self.room += 1
        return item


async def _released(event: Event) -> None:
    """Stands in for a handler after unsubscribe, so that nothing references it any more."""


class Subscription(Mailbox):
    """A handler subscribed to a pattern: its mailbox, and the worker task that feeds it.

    Watchdog protocol: `started` is the monotonic start of the running attempt (0.0 while the
    worker waits); the watchdog cancels an overdue attempt once and sets `timing_out`, so the
    worker can tell that CancelledError from a real one.
    """

    __slots__ = (
        "cancelled_for",
        "dead_letter",
        "delivered",
        "dropped",
        "failed",
        "handler",
        "handler_name",
        "is_active",
        "is_async",
        "mode",
        "name",
        "order",
        "owner",
        "pattern",
        "priority",
        "retries",
        "retry_delay",
        "started",
        "task",
        "timed_out",
        "timeout",
        "timing_out",
        "topics",
    )

    def __init__(
        self,
        pattern: str,
        handler: Callable[[Event], Any],
        *,
        owner: str,
        priority: int,
        mode: Mode,
        timeout: float,
        retries: int,
        retry_delay: float,
        queue_size: int,
        order: int,
        topics: dict[str, Counters],
        dead_letter: DeadLetterer,
    ) -> None:
        super().__init__(queue_size)
        self.pattern, self.handler, self.owner = pattern, handler, owner
        self.handler_name: str = (
            getattr(handler, "__qualname__", None) or type(handler).__qualname__
        )
        self.name = f"{owner}:{self.handler_name}"
        self.is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            type(handler).__call__  # an object with `async def __call__`
        )
        self.priority, self.mode, self.order = priority, mode, order
        self.timeout, self.retries, self.retry_delay = timeout, retries, retry_delay
        self.topics, self.dead_letter = topics, dead_letter
        self.task: asyncio.Task[None] | None = None
        self.is_active = True
        self.started = self.cancelled_for = 0.0
        self.timing_out = False
        self.delivered = self.failed = self.timed_out = self.dropped = 0

    async def run(self) -> None:
        """The worker: hand each queued event to the handler, until closed and drained."""
        normal, other, putters = self.normal, self.other, self.putters
        popleft = normal.popleft
        topics_get, topics = self.topics.get, self.topics
        last_topic, last_counters = "", Counters()  # most events repeat the previous topic
        get_cid, set_cid = _correlation_id.get, _correlation_id.set
        now, is_async = time.monotonic, self.is_async
        task = cast("asyncio.Task[None]", asyncio.current_task())
        item: Item | None
        while True:
            if normal and not other:
                item = popleft()
                if putters:
                    self.wake_putter()
            else:
                item = self.get_nowait()
                if item is None:
                    self.started = 0.0
                    item = await self.get()
                    if item is None:
                        return
            if item.__class__ is Tracked:
                event, tracker = item.event, item.tracker
            else:
                event, tracker = item, None  # type: ignore[assignment]  # not narrowed by mypy
            cid = event.correlation_id
            if cid is not get_cid():
                set_cid(cid)  # events published by the handler inherit it
            self.started = now()
            try:
                if is_async:
                    await self.handler(event)
                else:
                    result = self.handler(event)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except asyncio.CancelledError as exc:
                error = self._classify(task, exc)
                if error is None:
                    if tracker is not None:
                        tracker.drop(self)
                    raise
                timed_out = isinstance(error, TimeoutError)
            except Exception as exc:  # noqa: BLE001 - plugin code may raise anything
                error, timed_out = exc, False
            else:
                if not self.timing_out:
                    self.delivered += 1
                    if event.type is not last_topic:
                        last_topic = event.type
                        last_counters = topics_get(last_topic) or counters_for(topics, last_topic)
                    last_counters.delivered += 1
                    if tracker is not None:
                        tracker.finish(self)
                    continue
                error, timed_out = self._overran(task), True
            await self._recover(task, event, tracker, error, timed_out)
            error = None  # its traceback would keep the handler's frames alive while idle

    def release(self) -> None:
        """Stop taking events: drop the queued ones and every reference to the handler."""
        self.is_active = False
        self.timing_out = False
        self.close()
        for item in self.clear():
            event, tracker = (
                (item.event, item.tracker) if isinstance(item, Tracked) else (item, None)
            )
            self.dropped += 1
            counters_for(self.topics, event.type).dropped += 1
            if tracker is not None:
                tracker.drop(self)
        self.handler = _released
        self.task = None

    def _classify(
        self, task: asyncio.Task[None], exc: asyncio.CancelledError
    ) -> BaseException | None:
        """A CancelledError out of the handler: a timeout, a real cancellation (None), or a bug."""
        if self.timing_out:
            self.timing_out = False
            task.uncancel()
            error = TimeoutError(
                f"Handler {self.name!r} did not finish within {self.timeout} s, so it was cancelled"
            )
            return error.with_traceback(exc.__traceback__)  # shows where the handler hung
        if task.cancelling():
            return None
        return exc  # the handler let a CancelledError of its own escape: a failure like any other

    def _overran(self, task: asyncio.Task[None]) -> TimeoutError:
        # The handler swallowed the watchdog's cancellation and returned late: still a timeout.
        self.timing_out = False
        task.uncancel()
        return TimeoutError(
            f"Handler {self.name!r} did not finish within {self.timeout} s "
            f"and ignored its cancellation"
        )

    async def _attempt(
        self, task: asyncio.Task[None], event: Event
    ) -> tuple[BaseException | None, bool]:
        _correlation_id.set(event.correlation_id)
        self.started = time.monotonic()
        try:
            if self.is_async:
                await self.handler(event)
            else:
                result = self.handler(event)
                if result is not None and inspect.isawaitable(result):
                    await result
        except asyncio.CancelledError as exc:
            error = self._classify(task, exc)
            if error is None:
                raise
            return error, isinstance(error, TimeoutError)
        except Exception as exc:  # noqa: BLE001 - plugin code may raise anything
            return exc, False
        if self.timing_out:
            return self._overran(task), True
        return None, False

    async def _recover(
        self,
        task: asyncio.Task[None],
        event: Event,
        tracker: Outcome | None,
        error: BaseException,
        timed_out: bool,
    ) -> None:
        """Retry a failed event with exponential backoff, then dead-letter it."""
        attempts = 1
        try:
            while True:
                counters = counters_for(self.topics, event.type)
                self.failed += 1
                counters.failed += 1
                if timed_out:
                    self.timed_out += 1
                    counters.timed_out += 1
                if attempts > self.retries:
                    letter = self.dead_letter(self, event, error, attempts)
                    if tracker is not None:
                        tracker.fail(self, letter)
                    return
                delay = self.retry_delay * 2 ** (attempts - 1)
                logger.warning(
                    "Handler %r of plugin %r failed on event %r (%s), attempt %d of %d, "
                    "retrying in %.2f s: %s",
                    self.handler_name,
                    self.owner,
                    event.type,
                    event.id,
                    attempts,
                    self.retries + 1,
                    delay,
                    describe(error),
                    extra={"plugin": self.owner, "topic": event.type, "event_id": event.id},
                )
                self.started = 0.0  # the backoff is not the handler's time
                await asyncio.sleep(delay)
                attempts += 1
                outcome, timed_out = await self._attempt(task, event)
                if outcome is None:
                    self.delivered += 1
                    counters_for(self.topics, event.type).delivered += 1
                    if tracker is not None:
                        tracker.finish(self)
                    return
                error = outcome
        except asyncio.CancelledError:
            if tracker is not None:
                tracker.drop(self)
            raise


def describe(error: BaseException) -> str:
    """`"ValueError: bad input"`, or just the type name when the message is empty."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def watch_interval(timeout: float) -> float:
    """How often the watchdog must look to catch an overrun of `timeout` reasonably soon."""
    return max(MIN_WATCH_INTERVAL, min(timeout / 4, MAX_WATCH_INTERVAL))


class Watchdog:
    """Cancels overdue handler attempts: one task per bus instead of a timer per delivery."""

    __slots__ = ("interval", "subs", "task")

    def __init__(self, subs: list[Subscription]) -> None:
        self.subs = subs  # the bus's own list, so new subscriptions are watched too
        self.interval = MAX_WATCH_INTERVAL
        self.task: asyncio.Task[None] | None = None

    def start(self, interval: float) -> None:
        """(Re)start watching every `interval` seconds."""
        if self.task is not None:
            self.task.cancel()
        self.interval = interval
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name="nexus.events:watchdog"
        )
        self.task.add_done_callback(log_crash)

    async def stop(self) -> None:
        """Stop watching."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait([self.task])
            self.task = None

    async def _run(self) -> None:
        now = time.monotonic
        while True:
            await asyncio.sleep(self.interval)
            moment = now()
            for sub in self.subs:
                started = sub.started
                if (
                    started
                    and moment - started > sub.timeout
                    and sub.cancelled_for != started  # cancel each attempt once
                    and sub.task is not None
                ):
                    sub.cancelled_for = started
                    sub.timing_out = True
                    sub.task.cancel()


def log_crash(task: asyncio.Task[None]) -> None:
    """Done callback: log a bus task that died of an unexpected error (a bug in Nexus)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("Event bus task %s crashed", task.get_name(), exc_info=error)

"""The event bus: matching, ordering, isolation, backpressure, dead letters and lifecycle."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gc
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from nexus.errors import EventError, EventQueueFullError, NexusError, TransportError
from nexus.kernel.correlation import correlation_id
from nexus.kernel.events import (
    ClusterTransport,
    DeadLetter,
    Deliver,
    Event,
    EventBus,
    MemoryTransport,
    Receipt,
    Subscriber,
)
from nexus.kernel.plugin import Health


async def until(condition: Callable[[], bool], limit: float = 2.0) -> None:
    """Wait for something the bus does in the background; fail the test after `limit` s."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the state changes inside the bus's own tasks
            await asyncio.sleep(0.001)


class Recorder:
    """A handler that records the data (or topic) of each event it receives."""

    def __init__(self, key: str = "data") -> None:
        self.key = key
        self.seen: list[Any] = []

    async def __call__(self, event: Event) -> None:
        self.seen.append(getattr(event, self.key))


class Gate:
    """A handler that records each event's data and blocks on the first until `open()`."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, event: Event) -> None:
        self.seen.append(event.data)
        self.started.set()
        await self.release.wait()

    def open(self) -> None:
        self.release.set()


# -- matching -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("user.created", ["user.created"]),
        ("user.*", ["user.created", "user.deleted", "user.updated"]),
        ("*.created", ["user.created", "order.created"]),
        (
            "user.**",
            ["user", "user.created", "user.deleted", "user.profile.updated", "user.updated"],
        ),
        ("user.**.updated", ["user.profile.updated", "user.updated"]),
        (
            "**",
            [
                *("user", "user.created", "user.deleted", "user.profile.updated"),
                *("user.updated", "order.created"),
            ],
        ),
    ],
)
async def test_patterns_match_exact_one_segment_and_any_segments(
    pattern: str, expected: list[str]
) -> None:
    """`*` matches exactly one segment, `**` any number including zero, others match exactly."""
    topics = [
        "user",
        "user.created",
        "user.deleted",
        "user.profile.updated",
        "user.updated",
        "order.created",
    ]
    recorder = Recorder("type")
    async with EventBus() as bus:
        bus.subscribe(pattern, recorder)
        for topic in topics:
            await bus.publish_and_wait(topic)
    assert sorted(recorder.seen) == sorted(expected)


# -- ordering -------------------------------------------------------------------------------


async def test_higher_priority_handlers_start_first() -> None:
    """Each event is handed to higher-priority handlers first; ties go by subscription order."""
    started: list[str] = []

    def handler(name: str) -> Callable[[Event], Any]:
        async def record(event: Event) -> None:
            started.append(name)

        return record

    async with EventBus() as bus:
        bus.subscribe("job", handler("low"), priority=-1)
        bus.subscribe("job", handler("first-default"))
        bus.subscribe("job", handler("high"), priority=10)
        bus.subscribe("job", handler("second-default"))
        await asyncio.sleep(0)  # let the new workers reach their (empty) mailboxes
        await bus.publish_and_wait("job")
    assert started == ["high", "first-default", "second-default", "low"]


async def test_higher_priority_events_jump_the_queue() -> None:
    """Queued events are handled highest priority first, in publish order within a priority."""
    gate = Gate()
    async with EventBus() as bus:
        bus.subscribe("job", gate)
        await bus.publish("job", "blocker")
        await gate.started.wait()
        for data, priority in [
            ("low-1", 0),
            ("high", 5),
            ("late", -1),
            ("low-2", 0),
            ("urgent", 9),
            ("high-2", 5),
        ]:
            await bus.publish("job", data, priority=priority)
        assert bus.subscriptions()[0].queued == 6
        gate.open()
        await bus.publish_and_wait("job", "last", priority=-5)
    assert gate.seen == ["blocker", "urgent", "high", "high-2", "low-1", "low-2", "late", "last"]


# -- isolation, retries, dead letters ---------------------------------------------------------


async def test_raising_handler_does_not_affect_other_subscribers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that raises is logged with its plugin and topic; the others get every event."""

    async def broken(event: Event) -> None:
        raise ValueError(f"cannot handle {event.data}")

    good = Recorder()
    async with EventBus(retries=0) as bus:
        bus.subscribe("user.*", broken, owner="audit")
        bus.subscribe("user.*", good, owner="mailer")
        for n in range(5):
            await bus.publish("user.created", n)
        await until(lambda: len(bus.dead_letters) == 5)
        await bus.publish_and_wait("user.created", "after")
    assert good.seen == [0, 1, 2, 3, 4, "after"]
    errors = [r for r in caplog.records if r.name == "nexus.events" and r.levelno == logging.ERROR]
    assert len(errors) == 6
    assert "'audit'" in errors[0].getMessage()
    assert "'user.created'" in errors[0].getMessage()
    assert "ValueError: cannot handle 0" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert bus.stats["user.created"]["failed"] == 6
    assert bus.stats["user.created"]["delivered"] == 6


async def test_hanging_handler_times_out_without_stalling_others() -> None:
    """A handler past its timeout is cancelled and dead-lettered; other handlers keep going."""
    hung = Gate()
    fast = Recorder()
    async with EventBus(retries=0) as bus:
        bus.subscribe("job", hung, owner="slow", timeout=0.05)
        bus.subscribe("job", fast, owner="fast")
        for n in range(3):
            await bus.publish("job", n)
        await until(lambda: fast.seen == [0, 1, 2])
        assert hung.seen == [0]  # still stuck on the first event
        await until(lambda: len(bus.dead_letters) == 3)
        await bus.publish_and_wait("job", "more")
        (slow_info,) = bus.subscriptions(owner="slow")
    letters = bus.dead_letters.list()
    assert [letter.event.data for letter in letters] == ["more", 2, 1, 0]
    assert letters[0].error.startswith("TimeoutError: Handler 'slow:Gate' did not finish within")
    assert "await self.release.wait()" in letters[0].traceback  # where it hung
    assert fast.seen == [0, 1, 2, "more"]
    assert bus.stats["job"]["timed_out"] == 4
    assert (slow_info.timed_out, slow_info.failed, slow_info.delivered) == (4, 4, 0)


async def test_timeout_applies_to_each_attempt_and_worker_carries_on() -> None:
    """After a timed-out attempt, the worker retries and handles later events normally."""
    calls: list[Any] = []

    async def first_attempt_hangs(event: Event) -> None:
        calls.append(event.data)
        if len(calls) == 1:
            await asyncio.sleep(10)

    async with EventBus(retries=1, retry_delay=0.001) as bus:
        bus.subscribe("job", first_attempt_hangs, timeout=0.05)
        report = await bus.publish_and_wait("job", "a")
        second = await bus.publish_and_wait("job", "b")
    assert (report.delivered, report.failed) == (1, 0)
    assert (second.delivered, second.failed) == (1, 0)
    assert calls == ["a", "a", "b"]
    assert bus.stats["job"]["timed_out"] == 1


async def test_handler_ignoring_its_cancellation_counts_as_timed_out() -> None:
    """A handler that swallows the timeout's cancellation still fails with a timeout."""
    handled: list[Any] = []

    async def stubborn(event: Event) -> None:
        if event.data == "hang":
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                handled.append("swallowed")
        handled.append(event.data)

    async with EventBus(retries=0) as bus:
        bus.subscribe("job", stubborn, timeout=0.05)
        report = await bus.publish_and_wait("job", "hang")
        after = await bus.publish_and_wait("job", "next")
    assert report.failed == 1
    assert "ignored its cancellation" in report.dead_lettered[0].error
    assert after.delivered == 1
    assert handled == ["swallowed", "hang", "next"]


async def test_cancelled_error_from_inside_a_handler_is_a_failure() -> None:
    """A CancelledError the handler raises itself is a handler failure, not the worker's end."""
    handled: list[Any] = []

    async def awaits_cancelled_work(event: Event) -> None:
        if event.data == "bad":
            raise asyncio.CancelledError
        handled.append(event.data)

    async with EventBus(retries=0) as bus:
        bus.subscribe("job", awaits_cancelled_work)
        report = await bus.publish_and_wait("job", "bad")
        await bus.publish_and_wait("job", "good")
    assert report.dead_lettered[0].error == "CancelledError"
    assert handled == ["good"]


async def test_failures_are_retried_then_dead_lettered(caplog: pytest.LogCaptureFixture) -> None:
    """A failing handler runs 1 + retries times, warning each time, then is dead-lettered."""
    attempts: list[str] = []

    async def on_login(event: Event) -> None:
        attempts.append(event.id)
        raise ValueError("nope")

    async with EventBus(retries=2, retry_delay=0.001) as bus:
        bus.subscribe("user.login", on_login, owner="audit", retries=3)
        report = await bus.publish_and_wait("user.login", {"user": 1})
    assert len(attempts) == 4
    assert len(set(attempts)) == 1  # the same event each time
    (letter,) = report.dead_lettered
    assert bus.dead_letters.list() == [letter]
    assert letter.event == report.event
    assert letter.subscriber.startswith("audit:") and letter.subscriber.endswith("on_login")
    assert (letter.pattern, letter.error, letter.attempts) == ("user.login", "ValueError: nope", 4)
    assert isinstance(letter.traceback, str)
    assert 'raise ValueError("nope")' in letter.traceback
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().count("attempt") for r in warnings] == [1, 1, 1]
    assert "attempt 3 of 4" in warnings[-1].getMessage()
    assert bus.stats["user.login"]["failed"] == 4
    assert bus.stats["user.login"]["dead_lettered"] == 1


async def test_handler_succeeding_on_retry_is_delivered() -> None:
    """A handler that fails once and then succeeds counts as delivered, with no dead letter."""
    calls: list[int] = []

    async def flaky(event: Event) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("flaky")

    async with EventBus(retries=2, retry_delay=0.001) as bus:
        bus.subscribe("job", flaky)
        report = await bus.publish_and_wait("job")
    assert (report.delivered, report.failed, len(calls)) == (1, 0, 2)
    assert len(bus.dead_letters) == 0


async def test_redeliver_after_the_handler_is_fixed() -> None:
    """A dead letter redelivered once its handler works is handled and leaves the store."""
    state = {"broken": True}
    handled: list[str] = []

    async def handler(event: Event) -> None:
        if state["broken"]:
            raise RuntimeError("database down")
        handled.append(event.id)

    other = Recorder("id")
    async with EventBus(retries=0) as bus:
        bus.subscribe("order.paid", handler, owner="billing")
        bus.subscribe("order.paid", other, owner="mailer")
        first = await bus.publish_and_wait("order.paid", 1)
        letter_id = first.dead_lettered[0].id
        assert bus.dead_letters.get(letter_id) == first.dead_lettered[0]
        state["broken"] = False
        report = await bus.dead_letters.redeliver(letter_id)
    assert (report.delivered, report.failed) == (1, 0)
    assert handled == [first.event.id]
    assert other.seen == [first.event.id]  # only the failed subscriber got it again
    assert bus.dead_letters.get(letter_id) is None


async def test_redeliver_fails_clearly_when_subscriber_is_gone() -> None:
    """Redelivering to an unsubscribed handler, or an unknown letter, raises a clear error."""

    async def broken(event: Event) -> None:
        raise RuntimeError("down")

    async with EventBus(retries=0) as bus:
        unsubscribe = bus.subscribe("order.paid", broken, owner="billing")
        report = await bus.publish_and_wait("order.paid")
        letter = report.dead_lettered[0]
        unsubscribe()
        with pytest.raises(EventError, match=r"subscriber 'billing:.*broken' .* no longer"):
            await bus.dead_letters.redeliver(letter.id)
        assert bus.dead_letters.get(letter.id) == letter
        with pytest.raises(EventError, match="No dead letter with id 'missing'"):
            await bus.dead_letters.redeliver("missing")
    with pytest.raises(
        EventError, match=r"Cannot redeliver 'order\.paid': the event bus is closed"
    ):
        await bus.dead_letters.redeliver(letter.id)


async def test_dead_letter_store_is_bounded_and_manageable() -> None:
    """The store keeps the newest letters up to its limit, counting the ones it drops."""

    async def broken(event: Event) -> None:
        raise RuntimeError(event.data)

    async with EventBus(retries=0, dead_letter_limit=2) as bus:
        bus.subscribe("job", broken)
        for n in range(3):
            await bus.publish_and_wait("job", n)
        store = bus.dead_letters
        assert [letter.event.data for letter in store.list()] == [2, 1]
        assert store.dropped == 1
        newest = store.list()[0]
        assert store.discard(newest.id) is True
        assert store.discard(newest.id) is False
        assert store.clear() == 1
        assert len(store) == 0


# -- backpressure -------------------------------------------------------------------------


async def test_full_queue_makes_publish_wait_then_raise() -> None:
    """A full mailbox blocks publish for publish_timeout, then raises naming who and how."""
    gate = Gate()
    other = Recorder()
    async with EventBus(queue_size=2, publish_timeout=0.05) as bus:
        bus.subscribe("job", gate, owner="reports")
        bus.subscribe("job", other, owner="mailer")
        await bus.publish("job", 0)
        await gate.started.wait()
        await bus.publish("job", 1)
        await bus.publish("job", 2)
        with pytest.raises(
            EventQueueFullError,
            match=r"'job' was not delivered to 'reports:Gate' \(pattern 'job'\): the subscriber's "
            r"queue stayed full \(2 events\) for 0\.05 s\. Raise the EventBus `queue_size`, or "
            r"make the handler faster",
        ):
            await bus.publish("job", 3)
        await until(lambda: len(other.seen) == 4)
        assert other.seen == [0, 1, 2, 3]  # the other subscriber was not held back
        assert bus.stats["job"]["dropped"] == 1
        gate.open()
        await bus.publish_and_wait("job", 4)
    assert gate.seen == [0, 1, 2, 4]


async def test_publish_resumes_when_room_frees_up() -> None:
    """While the mailbox is full, publish waits, and completes as soon as there is room."""
    gate = Gate()
    async with EventBus(queue_size=1, publish_timeout=2.0) as bus:
        bus.subscribe("job", gate)
        await bus.publish("job", 0)
        await gate.started.wait()
        await bus.publish("job", 1)
        waiting = asyncio.create_task(bus.publish("job", 2))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        gate.open()
        event = await waiting
        await bus.publish_and_wait("job", 3)
    assert event.data == 2
    assert gate.seen == [0, 1, 2, 3]


# -- publish_and_wait -------------------------------------------------------------------------


async def test_publish_and_wait_reports_every_handler_outcome() -> None:
    """The report counts handlers that finished and those dead-lettered, after retries."""
    done: list[str] = []

    async def slow_ok(event: Event) -> None:
        await asyncio.sleep(0.01)
        done.append("slow")

    async def failing(event: Event) -> None:
        raise KeyError("missing")

    async with EventBus(retries=1, retry_delay=0.001) as bus:
        bus.subscribe("user.*", slow_ok)
        bus.subscribe("user.created", failing, owner="audit")
        report = await bus.publish_and_wait("user.created", {"id": 1})
        nobody = await bus.publish_and_wait("nobody.listens")
    assert done == ["slow"]
    assert (report.delivered, report.failed, report.dropped) == (1, 1, 0)
    assert report.dead_lettered[0].subscriber.startswith("audit:")
    assert report.dead_lettered[0].attempts == 2
    assert report.event.data == {"id": 1}
    assert (nobody.delivered, nobody.failed, nobody.dead_lettered) == (0, 0, ())


async def test_publish_and_wait_times_out_naming_the_pending_handlers() -> None:
    """If handlers take longer than `timeout`, TimeoutError names the ones still running."""
    gate = Gate()
    async with EventBus() as bus:
        bus.subscribe("job", gate, owner="reports")
        with pytest.raises(TimeoutError, match=r"did not finish within 0\.02 s: reports:Gate"):
            await bus.publish_and_wait("job", timeout=0.02)
        gate.open()


# -- envelope and correlation -----------------------------------------------------------------


async def test_event_envelope_fields_and_cloudevents_dict() -> None:
    """Events carry id, topic, source, time, data, correlation id and priority, and serialize."""
    before = time.time()
    async with EventBus() as bus:
        event = await bus.publish("user.created", {"id": 7}, source="auth", priority=3)
        ids = {(await bus.publish("user.created")).id for _ in range(100)}
    after = time.time()
    assert type(event) is Event
    assert (event.type, event.source, event.data, event.priority) == (
        "user.created",
        "auth",
        {"id": 7},
        3,
    )
    assert event.correlation_id is None
    assert before <= event.time <= after
    assert event.datetime == dt.datetime.fromtimestamp(event.time, dt.UTC)
    assert event.datetime.tzinfo is dt.UTC
    assert len(ids | {event.id}) == 101
    assert event == Event(event.id, "user.created", "auth", event.time, {"id": 7}, None, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = "changed"  # type: ignore[misc]
    as_dict = event.to_dict()
    assert as_dict == {
        "specversion": "1.0",
        "id": event.id,
        "type": "user.created",
        "source": "auth",
        "time": as_dict["time"],
        "correlationid": None,
        "priority": 3,
        "data": {"id": 7},
    }
    assert as_dict["time"].endswith("Z")
    assert dt.datetime.fromisoformat(as_dict["time"]) == event.datetime


async def test_correlation_id_comes_from_the_request_and_is_inherited_by_handlers() -> None:
    """Events take the current correlation id; events published inside handlers inherit it."""
    seen: list[tuple[str, str | None, str | None]] = []

    async with EventBus() as bus:

        async def on_order(event: Event) -> None:
            seen.append(("order", event.correlation_id, correlation_id.get()))
            await bus.publish("mail.send", event.data)

        def on_mail(event: Event) -> None:
            seen.append(("mail", event.correlation_id, correlation_id.get()))

        bus.subscribe("order.placed", on_order)
        bus.subscribe("mail.send", on_mail)
        token = correlation_id.set("req-42")
        try:
            await bus.publish("order.placed", 1)
            await until(lambda: len(seen) == 2)
        finally:
            correlation_id.reset(token)
        await bus.publish("order.placed", 2)  # outside any request
        await until(lambda: len(seen) == 4)
        await bus.publish("order.placed", 3, correlation_id="explicit")
        await until(lambda: len(seen) == 6)
    assert seen == [
        ("order", "req-42", "req-42"),
        ("mail", "req-42", "req-42"),
        ("order", None, None),
        ("mail", None, None),
        ("order", "explicit", "explicit"),
        ("mail", "explicit", "explicit"),
    ]


# -- validation -------------------------------------------------------------------------------


async def test_invalid_topics_patterns_and_options_are_rejected_with_reasons() -> None:
    """Bad topics fail at publish, bad patterns and options at subscribe, saying what is wrong."""
    async with EventBus() as bus:
        with pytest.raises(EventError, match=r"Invalid event topic 'user\.\*'.*subscriptions"):
            await bus.publish("user.*")
        with pytest.raises(EventError, match=r"Invalid event topic 'user\.\.created'"):
            await bus.publish_and_wait("user..created")
        with pytest.raises(EventError, match=r"Invalid event pattern 'user\.\*\*x'"):
            bus.subscribe("user.**x", Recorder())
        with pytest.raises(
            EventError,
            match=r"Invalid subscription to 'user\.\*' by 'audit': mode must be 'shared' or "
            r"'broadcast', got 'fanout'; timeout must be a positive number of seconds, got 0; "
            r"retries must be 0 or more, got -1\.",
        ):
            bus.subscribe("user.*", Recorder(), owner="audit", mode="fanout", timeout=0, retries=-1)  # type: ignore[arg-type]
        with pytest.raises(EventError, match="the handler must be callable, got 'oops'"):
            bus.subscribe("user.*", "oops")  # type: ignore[arg-type]
        with pytest.raises(EventError, match="priority must be an integer, got 'high'"):
            bus.subscribe("user.*", Recorder(), priority="high")  # type: ignore[arg-type]
        with pytest.raises(EventError, match=r"'user\.created': priority must be an integer"):
            await bus.publish("user.created", priority=1.5)  # type: ignore[arg-type]
        with pytest.raises(EventError, match="priority must be an integer"):
            await bus.publish_and_wait("user.created", priority="high")  # type: ignore[arg-type]
        assert bus.subscriptions() == []
    with pytest.raises(
        EventError, match="queue_size must be at least 1, got 0; retries must be 0 or more, got -1"
    ):
        EventBus(queue_size=0, retries=-1)


async def test_subscription_mode_is_kept_for_transports() -> None:
    """Shared and broadcast subscriptions both receive events in process, and keep their mode."""
    shared, broadcast = Recorder(), Recorder()
    async with EventBus() as bus:
        bus.subscribe("job", shared, owner="a")
        bus.subscribe("job", broadcast, owner="b", mode="broadcast")
        await bus.publish_and_wait("job", 1)
        assert [info.mode for info in bus.subscriptions()] == ["shared", "broadcast"]
        assert [info.mode for info in bus.subscriptions(owner="b")] == ["broadcast"]
    assert shared.seen == broadcast.seen == [1]


# -- unsubscribe and lifecycle ----------------------------------------------------------------


async def test_unsubscribe_stops_delivery_drops_queued_events_and_is_idempotent() -> None:
    """After unsubscribe nothing more is delivered; queued events are dropped and counted."""
    gate = Gate()
    async with EventBus() as bus:
        unsubscribe = bus.subscribe("job", gate)
        await bus.publish("job", 0)
        await gate.started.wait()
        for n in (1, 2, 3):
            await bus.publish("job", n)
        waiting = asyncio.create_task(bus.publish_and_wait("job", 4))
        await asyncio.sleep(0)
        unsubscribe()
        unsubscribe()
        report = await waiting
        await bus.publish("job", 5)
        await asyncio.sleep(0.01)
    assert gate.seen == [0]
    assert report.dropped == 1
    assert bus.stats["job"]["dropped"] == 4
    assert bus.subscriptions() == []


async def test_handler_may_unsubscribe_itself() -> None:
    """A handler that unsubscribes itself finishes its work and receives nothing more."""
    seen: list[Any] = []
    unsubscribe: Callable[[], None]

    async def once(event: Event) -> None:
        unsubscribe()
        await asyncio.sleep(0)
        seen.append(event.data)

    async with EventBus() as bus:
        unsubscribe = bus.subscribe("job", once)
        await bus.publish("job", 1)
        await bus.publish("job", 2)
        await until(lambda: seen == [1])
        await bus.publish_and_wait("job", 3)
    assert seen == [1]


class Plugin:
    """Stands in for a plugin instance whose bound method is a handler."""

    def __init__(self) -> None:
        self.count = 0

    async def on_event(self, event: Event) -> None:
        self.count += 1


async def test_unsubscribe_releases_the_handler() -> None:
    """Once unsubscribed, the bus keeps no reference to the handler or its plugin object."""
    plugin = Plugin()
    ref = weakref.ref(plugin)
    async with EventBus() as bus:
        unsubscribe = bus.subscribe("job", plugin.on_event)
        await bus.publish_and_wait("job")
        assert plugin.count == 1
        unsubscribe()
        del plugin
        gc.collect()
        assert ref() is None


async def test_close_releases_the_handlers() -> None:
    """After close, the bus keeps no reference to any handler or its plugin object."""
    plugin = Plugin()
    ref = weakref.ref(plugin)
    bus = EventBus()
    bus.subscribe("job", plugin.on_event)
    async with bus:
        await bus.publish_and_wait("job")
    del plugin
    gc.collect()
    assert ref() is None


async def test_close_lets_queued_events_finish() -> None:
    """close() waits for queued events to be handled within the grace period."""
    seen: list[int] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0.001)
        seen.append(event.data)

    bus = EventBus()
    bus.subscribe("job", slow)
    await bus.start()
    for n in range(5):
        await bus.publish("job", n)
    await bus.close(grace=2.0)
    assert seen == [0, 1, 2, 3, 4]
    assert not bus.is_running


async def test_close_cancels_handlers_still_running_after_the_grace_period() -> None:
    """Handlers still busy after the grace period are cancelled and queued events dropped."""
    gate = Gate()
    cancelled: list[bool] = []

    async def hang(event: Event) -> None:
        try:
            await gate(event)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    bus = EventBus()
    bus.subscribe("job", hang)
    await bus.start()
    running = asyncio.create_task(bus.publish_and_wait("job", 0))
    await gate.started.wait()
    queued = asyncio.create_task(bus.publish_and_wait("job", 1))
    await asyncio.sleep(0)
    await bus.close(grace=0.02)
    assert cancelled == [True]
    assert gate.seen == [0]
    assert (await running).dropped == 1
    assert (await queued).dropped == 1
    assert bus.stats["job"]["dropped"] == 1
    assert len(bus.dead_letters) == 0  # a shutdown is not a handler failure


async def test_publish_before_start_and_after_close_is_an_error() -> None:
    """Publishing needs a running bus; a closed bus refuses publishes, subscriptions, restarts."""
    bus = EventBus()
    with pytest.raises(EventError, match=r"Cannot publish to 'job': .* not started yet"):
        await bus.publish("job")
    await bus.start()
    await bus.start()  # already running: nothing to do
    await bus.close()
    await bus.close()  # idempotent
    with pytest.raises(NexusError, match=r"Cannot publish to 'job': the event bus is closed"):
        await bus.publish("job")
    with pytest.raises(EventError, match=r"Cannot publish to 'job': the event bus is closed"):
        await bus.publish_and_wait("job")
    with pytest.raises(EventError, match=r"Cannot subscribe to 'job': the event bus is closed"):
        bus.subscribe("job", Recorder())
    with pytest.raises(EventError, match="cannot start again"):
        await bus.start()


async def test_unstarted_bus_closes_cleanly() -> None:
    """Closing a bus that never started releases its subscriptions without error."""
    bus = EventBus()
    bus.subscribe("job", Recorder())
    await bus.close()
    assert bus.subscriptions() == []


# -- sync handlers, transports, stats ---------------------------------------------------------


async def test_sync_handlers_are_supported() -> None:
    """Plain functions can handle events, fail like async ones, and may return an awaitable."""
    seen: list[Any] = []
    later: list[Any] = []

    def sync_handler(event: Event) -> None:
        if event.data == "bad":
            raise ValueError("sync failure")
        seen.append(event.data)

    async def finish(event: Event) -> None:
        later.append(event.data)

    async with EventBus(retries=0) as bus:
        bus.subscribe("job", sync_handler)
        bus.subscribe("job", lambda event: finish(event))
        await bus.publish_and_wait("job", 1)
        report = await bus.publish_and_wait("job", "bad")
    assert seen == [1]
    assert later == [1, "bad"]
    assert report.dead_lettered[0].error == "ValueError: sync failure"


class LoopbackTransport:
    """A transport that records what it carries and hands it straight back."""

    def __init__(self) -> None:
        self.carried: list[str] = []
        self.deliver: Deliver | None = None
        self.closed = False

    async def start(self, deliver: Deliver) -> None:
        self.deliver = deliver

    async def publish(self, event: Event) -> None:
        self.carried.append(event.type)
        assert self.deliver is not None
        await self.deliver(event)

    async def close(self) -> None:
        self.closed = True


async def test_events_travel_through_the_transport() -> None:
    """A custom transport carries every published event and its deliveries reach handlers."""
    transport = LoopbackTransport()
    recorder = Recorder()
    gate = Gate()
    async with EventBus(transport, queue_size=1, publish_timeout=0.02) as bus:
        bus.subscribe("user.*", recorder)
        await bus.publish("user.created", 1)
        report = await bus.publish_and_wait("user.deleted", 2)
        bus.subscribe("job", gate)
        await bus.publish("job", 0)
        await gate.started.wait()
        await bus.publish("job", 1)
        with pytest.raises(EventQueueFullError):
            await bus.publish("job", 2)
        gate.open()
    assert transport.carried == ["user.created", "user.deleted", "job", "job", "job"]
    assert recorder.seen == [1, 2]
    assert report.delivered == 1
    assert transport.closed


async def test_stats_count_per_topic_and_bound_the_number_of_topics() -> None:
    """Counters are kept per topic; past 10,000 topics the rest share the "**" counters."""
    async with EventBus() as bus:
        bus.subscribe("user.*", Recorder())
        await bus.publish_and_wait("user.created")
        await bus.publish_and_wait("user.created")
        await bus.publish_and_wait("user.deleted")
        for n in range(10_000):
            await bus.publish(f"other.t{n}")
        await bus.publish_and_wait("user.late")
        stats = bus.stats
    assert stats["user.created"] == {
        "published": 2,
        "delivered": 2,
        "failed": 0,
        "timed_out": 0,
        "dead_lettered": 0,
        "dropped": 0,
    }
    assert stats["user.deleted"]["published"] == 1
    assert "user.late" not in stats
    assert stats["**"]["published"] == 3
    assert stats["**"]["delivered"] == 1
    assert len(stats) == 10_001


async def test_close_during_a_retry_backoff_drops_the_delivery() -> None:
    """A delivery waiting to be retried when the bus closes is dropped, not dead-lettered."""

    def broken(event: Event) -> None:
        raise RuntimeError("down")

    bus = EventBus(retries=3, retry_delay=10.0)
    bus.subscribe("job", broken)
    await bus.start()
    waiting = asyncio.create_task(bus.publish_and_wait("job"))
    await until(lambda: bus.subscriptions()[0].failed == 1)
    await bus.close(grace=0.01)
    report = await waiting
    assert (report.delivered, report.failed, report.dropped) == (0, 0, 1)
    assert len(bus.dead_letters) == 0


async def test_sync_handler_is_retried() -> None:
    """A failing sync handler is retried like an async one."""
    calls: list[int] = []

    def flaky(event: Event) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("not yet")

    async with EventBus(retries=2, retry_delay=0.001) as bus:
        bus.subscribe("job", flaky)
        report = await bus.publish_and_wait("job")
    assert (report.delivered, len(calls)) == (1, 3)


async def test_unsubscribing_frees_a_publisher_waiting_for_room() -> None:
    """A publish blocked on a full mailbox returns once that subscriber unsubscribes."""
    gate = Gate()
    async with EventBus(queue_size=1, publish_timeout=5.0) as bus:
        unsubscribe = bus.subscribe("job", gate)
        await bus.publish("job", 0)
        await gate.started.wait()
        await bus.publish("job", 1)
        waiting = asyncio.create_task(bus.publish_and_wait("job", 2))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        unsubscribe()
        report = await waiting
    assert report.dropped == 1
    assert gate.seen == [0]


async def test_cancelled_publisher_gives_up_its_place() -> None:
    """Cancelling a publish that waits for room leaves the mailbox working for others."""
    gate = Gate()
    async with EventBus(queue_size=1, publish_timeout=5.0) as bus:
        bus.subscribe("job", gate)
        await bus.publish("job", 0)
        await gate.started.wait()
        await bus.publish("job", 1)
        waiting = asyncio.create_task(bus.publish("job", "cancelled"))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gate.open()
        await bus.publish_and_wait("job", 2)
    assert gate.seen == [0, 1, 2]


def test_subscriptions_can_be_managed_before_any_event_loop() -> None:
    """Subscribing and unsubscribing work on a bus that is not started, outside a loop."""
    bus = EventBus()
    unsubscribe = bus.subscribe("job", Recorder(), owner="early")
    assert [info.owner for info in bus.subscriptions()] == ["early"]
    unsubscribe()
    assert bus.subscriptions() == []


async def test_memory_transport_must_be_started() -> None:
    """The memory transport refuses events until a bus has started it."""
    event = Event("id-1", "job", "nexus", time.time(), None, None)
    with pytest.raises(TransportError, match="memory transport is not started"):
        await MemoryTransport().publish(event)


async def test_events_from_the_transport_reach_handlers() -> None:
    """Events the transport brings in (from other processes) are validated, delivered, counted."""
    transport = LoopbackTransport()
    recorder = Recorder("id")
    async with EventBus(transport) as bus:
        bus.subscribe("user.*", recorder)
        assert transport.deliver is not None
        await transport.deliver(Event("remote-1", "user.created", "auth", time.time(), {}, "r-1"))
        await until(lambda: recorder.seen == ["remote-1"])
        with pytest.raises(EventError, match="Invalid event topic"):
            await transport.deliver(Event("remote-2", "user.*", "auth", time.time(), {}, None))
        assert bus.stats["user.created"]["delivered"] == 1


class BrokenTransport(LoopbackTransport):
    """A transport whose server is unreachable."""

    async def publish(self, event: Event) -> None:
        raise TransportError("redis is unreachable")


async def test_transport_errors_reach_the_publisher() -> None:
    """If the transport cannot carry an event, publishing raises its error."""
    async with EventBus(BrokenTransport()) as bus:
        with pytest.raises(TransportError, match="unreachable"):
            await bus.publish("job")
        with pytest.raises(TransportError, match="unreachable"):
            await bus.publish_and_wait("job")


class SilentTransport(LoopbackTransport):
    """A transport that accepts events but (like a stalled cluster) never delivers them back."""

    async def publish(self, event: Event) -> None:
        self.carried.append(event.type)


async def test_close_resolves_waits_for_events_never_delivered() -> None:
    """publish_and_wait returns an empty report when the bus closes before delivery."""
    bus = EventBus(SilentTransport())
    bus.subscribe("job", Recorder())
    await bus.start()
    waiting = asyncio.create_task(bus.publish_and_wait("job"))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await bus.close()
    report = await waiting
    assert (report.delivered, report.failed, report.dropped) == (0, 0, 0)


# -- cluster transports ---------------------------------------------------------------------


class Outcome(Receipt):
    """Remembers what the bus made of one event handed in by a cluster transport."""

    def __init__(self) -> None:
        self.outcome: str | DeadLetter | None = None

    def handled(self) -> None:
        self.outcome = "handled"

    def dead_lettered(self, letter: DeadLetter) -> None:
        self.outcome = letter

    def dropped(self) -> None:
        self.outcome = "dropped"


class FakeCluster:
    """A cluster transport in memory: the test decides what each subscription receives."""

    def __init__(self) -> None:
        self.subscribers: dict[str, Subscriber] = {}
        self.published: list[Event] = []
        self.done_elsewhere: set[str] = set()  # event ids another instance handled
        self.unreachable = False

    async def start(self, deliver: Deliver) -> None:
        pass

    async def publish(self, event: Event) -> None:
        self.published.append(event)

    async def close(self) -> None:
        pass

    def attach(self, subscriber: Subscriber) -> Callable[[], None]:
        self.subscribers[subscriber.key] = subscriber
        return lambda: self.subscribers.pop(subscriber.key)

    async def acknowledged(self, event: Event, subscriber: Subscriber) -> bool:
        if self.unreachable:
            raise TransportError("the cluster is unreachable")
        return event.id in self.done_elsewhere

    async def health(self) -> Health:
        return Health.unhealthy("cluster down") if self.unreachable else Health.healthy("ok")


def remote(topic: str, data: Any = None, event_id: str = "remote-1") -> Event:
    return Event(event_id, topic, "elsewhere", time.time(), data, None, attempt=2)


async def test_cluster_transport_feeds_subscriptions_and_hears_each_outcome() -> None:
    """A cluster transport's events reach one subscription; its receipt says what became of it."""
    cluster = FakeCluster()
    assert isinstance(cluster, ClusterTransport)
    seen = Recorder("attempt")

    async def broken(event: Event) -> None:
        raise ValueError("no")

    async with EventBus(cluster, retries=0) as bus:
        bus.subscribe("user.*", seen, owner="mail")
        bus.subscribe("user.*", Recorder(), owner="mail", mode="broadcast")  # same qualname
        bus.subscribe("user.created", broken, owner="audit")
        assert sorted(cluster.subscribers) == [
            f"audit:user.created:{broken.__qualname__}",
            "mail:user.*:Recorder",
            "mail:user.*:Recorder#2",
        ]
        mail = cluster.subscribers["mail:user.*:Recorder"]
        assert (mail.owner, mail.pattern, mail.handler, mail.mode) == (
            "mail",
            "user.*",
            "Recorder",
            "shared",
        )
        assert mail.matches("user.created") and not mail.matches("order.created")
        assert repr(mail) == "<Subscriber 'mail:user.*:Recorder' (shared)>"
        handled, failed = Outcome(), Outcome()
        assert await mail.put(remote("user.created"), handled)
        audit = cluster.subscribers[f"audit:user.created:{broken.__qualname__}"]
        assert await audit.put(remote("user.created"), failed)
        await until(lambda: handled.outcome == "handled" and failed.outcome is not None)
        assert seen.seen == [2]  # the delivery's attempt count arrives with the event
        assert isinstance(failed.outcome, DeadLetter)
        assert failed.outcome.error == "ValueError: no"
        assert bus.stats["user.created"]["delivered"] == 1
        assert bus.stats["user.created"]["published"] == 0  # published by another instance
        await bus.publish("user.deleted")
        assert [event.type for event in cluster.published] == ["user.deleted"]
        assert seen.seen == [2]  # not delivered here by the bus itself
    assert cluster.subscribers == {}  # every subscription detached on close


async def test_cluster_deliveries_wait_for_room_and_drop_when_unsubscribed() -> None:
    """put waits while the mailbox is full; queued deliveries of an unsubscriber are dropped."""
    cluster = FakeCluster()
    gate = Gate()
    async with EventBus(cluster, queue_size=1) as bus:
        unsubscribe = bus.subscribe("job", gate, owner="worker")
        [subscriber] = cluster.subscribers.values()
        first, second, third = Outcome(), Outcome(), Outcome()
        assert subscriber.offer(remote("job", 1, "r-1"), first)
        await gate.started.wait()
        assert subscriber.offer(remote("job", 2, "r-2"), second)
        assert subscriber.offer(remote("job", 3, "r-3"), third) is None  # full
        waiting = asyncio.create_task(subscriber.put(remote("job", 3, "r-3"), third))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        gate.open()
        assert await waiting
        await until(lambda: third.outcome == "handled")
        gate.release.clear()
        blocked = Outcome()
        assert await subscriber.put(remote("job", 4, "r-4"), blocked)
        queued = Outcome()
        await until(lambda: len(gate.seen) == 4)
        assert subscriber.offer(remote("job", 5, "r-5"), queued)
        unsubscribe()
        assert queued.outcome == "dropped"
        await until(lambda: blocked.outcome == "dropped")  # its handler was cancelled
        assert not subscriber.is_active
        assert await subscriber.put(remote("job", 6, "r-6"), Outcome()) is False
        assert cluster.subscribers == {}


async def test_a_cluster_transport_may_dead_letter_what_it_will_not_deliver() -> None:
    """Subscriber.dead_letter records an event the transport gives up on, unhandled."""
    cluster = FakeCluster()
    async with EventBus(cluster) as bus:
        bus.subscribe("job", Recorder(), owner="worker")
        [subscriber] = cluster.subscribers.values()
        letter = subscriber.dead_letter(remote("job"), "delivered 6 times", 5)
    assert bus.dead_letters.get(letter.id) == letter
    assert (letter.error, letter.attempts, letter.subscriber) == (
        "TransportError: delivered 6 times",
        5,
        "worker:Recorder",
    )


async def test_publish_and_wait_through_a_cluster_transport() -> None:
    """Local deliveries report their outcome; a shared one handled elsewhere counts as delivered."""
    cluster = FakeCluster()

    async def broken(event: Event) -> None:
        raise ValueError("no")

    async with EventBus(cluster, retries=0) as bus:
        bus.subscribe("job", Recorder(), owner="here", mode="broadcast")
        bus.subscribe("job", broken, owner="failing", mode="broadcast")
        bus.subscribe("job", Recorder(), owner="shared")
        waiting = asyncio.create_task(bus.publish_and_wait("job", 1, timeout=5))
        await until(lambda: len(cluster.published) == 1)
        [event] = cluster.published
        here = cluster.subscribers["here:job:Recorder"]
        failing = cluster.subscribers[f"failing:job:{broken.__qualname__}"]
        assert await here.put(event, Outcome())
        assert await failing.put(event, Outcome())
        cluster.unreachable = True  # the check of the shared group fails for a while
        await asyncio.sleep(0.02)
        assert not waiting.done()
        cluster.unreachable = False
        cluster.done_elsewhere.add(event.id)
        report = await waiting
        assert (report.delivered, report.failed, report.dropped) == (2, 1, 0)

        unsubscribe = bus.subscribe("late", Recorder(), owner="gone")
        waiting = asyncio.create_task(bus.publish_and_wait("late", timeout=5))
        await until(lambda: len(cluster.published) == 2)
        unsubscribe()
        report = await waiting
        assert (report.delivered, report.dropped) == (0, 1)

        bus.subscribe("never", Recorder(), owner="stuck", mode="broadcast")
        waiting = asyncio.create_task(bus.publish_and_wait("never"))
        await until(lambda: len(cluster.published) == 3)
    report = await waiting  # the bus closed before the event came back
    assert (report.delivered, report.failed, report.dropped) == (0, 0, 0)


async def test_bus_health_is_the_transport_health() -> None:
    """The bus is unhealthy unless running, and then as healthy as its transport."""
    cluster = FakeCluster()
    bus = EventBus(cluster)
    assert await bus.health() == Health.unhealthy("the event bus is new")
    async with bus:
        assert (await bus.health()).ok
        cluster.unreachable = True
        assert await bus.health() == Health.unhealthy("cluster down")
    async with EventBus() as memory:
        assert await memory.health() == Health.healthy("MemoryTransport is running")

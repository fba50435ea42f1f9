"""The redis transport between instances: shared and broadcast delivery, acks, dead letters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from nexus.errors import EventError, TransportError
from nexus.kernel.events import Event
from tests.redis.conftest import MakeBus, ready, until, until_async


class Recorder:
    """Records each event it handles; the same qualname on every instance, so one group."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def data(self) -> list[Any]:
        return [event.data for event in self.events]


async def pending(client: Redis, stream: str, group: str) -> int:
    """How many entries the group holds unacknowledged."""
    summary = await client.xpending(stream, group)
    return int(summary["pending"])


async def test_shared_subscription_handles_each_event_once_across_instances(
    make_bus: MakeBus,
) -> None:
    """200 events from instance A: both instances together handle each exactly once."""
    a, b = await make_bus("a"), await make_bus("b")
    on_a, on_b = Recorder(), Recorder()
    a.subscribe("order.*", on_a, owner="billing")
    b.subscribe("order.*", on_b, owner="billing")
    await ready(a, b)
    await asyncio.gather(*(a.publish("order.created", n) for n in range(200)))
    await until(lambda: len(on_a.events) + len(on_b.events) >= 200)
    await asyncio.sleep(0.2)  # a duplicate would arrive now
    handled = on_a.data + on_b.data
    assert sorted(handled) == list(range(200))
    assert len({event.id for event in on_a.events + on_b.events}) == 200
    assert all(event.attempt == 1 and not event.redelivered for event in on_a.events)


async def test_each_subscribing_plugin_gets_every_event_once(make_bus: MakeBus) -> None:
    """Two plugins subscribed to one topic on both instances: each plugin sees every event once."""
    a, b = await make_bus("a"), await make_bus("b")
    billing, audit = [Recorder(), Recorder()], [Recorder(), Recorder()]
    for bus, mine, theirs in ((a, billing[0], audit[0]), (b, billing[1], audit[1])):
        bus.subscribe("order.created", mine, owner="billing")
        bus.subscribe("order.created", theirs, owner="audit")
    await ready(a, b)
    await asyncio.gather(*(b.publish("order.created", n) for n in range(20)))
    await until(lambda: sum(len(r.events) for r in billing + audit) >= 40)
    assert sorted(billing[0].data + billing[1].data) == list(range(20))
    assert sorted(audit[0].data + audit[1].data) == list(range(20))


async def test_broadcast_subscription_is_handled_on_every_instance(make_bus: MakeBus) -> None:
    """A broadcast subscription handles every event on each instance, in publish order."""
    a, b = await make_bus("a"), await make_bus("b")
    on_a, on_b = Recorder(), Recorder()
    a.subscribe("cache.invalidated", on_a, owner="cache", mode="broadcast")
    b.subscribe("cache.invalidated", on_b, owner="cache", mode="broadcast")
    await ready(a, b)
    for n in range(10):
        await a.publish("cache.invalidated", n)
    await until(lambda: len(on_a.events) == len(on_b.events) == 10)
    assert on_a.data == on_b.data == list(range(10))


async def test_only_matching_topics_of_a_stream_reach_the_handler(
    make_bus: MakeBus, client: Redis, prefix: str
) -> None:
    """Topics sharing a stream but not the pattern are skipped, and acknowledged all the same."""
    a = await make_bus("a")
    created = Recorder()
    a.subscribe("user.created", created, owner="mail")
    await ready(a)
    for topic in ("user.deleted", "user.created", "user.profile.updated", "user.created"):
        await a.publish(topic, topic)
    await until(lambda: len(created.events) == 2)
    stream = f"{prefix}:stream:user"
    await until_async(lambda: _no_pending(client, stream, "mail:user.created:Recorder"))
    assert created.data == ["user.created", "user.created"]
    assert await client.xlen(stream) == 4


async def _no_pending(client: Redis, stream: str, group: str) -> bool:
    return await pending(client, stream, group) == 0


async def test_wildcard_first_patterns_read_every_stream(make_bus: MakeBus) -> None:
    """`**` and `*.created` see events of every prefix, also of prefixes first used later."""
    a, b = await make_bus("a"), await make_bus("b")
    everything, created = Recorder(), Recorder()
    await a.publish("user.created", "before")  # makes the `user` stream known
    a.subscribe("**", everything, owner="audit")
    b.subscribe("*.created", created, owner="search", mode="broadcast")
    await ready(a, b)
    await a.publish("user.created", 1)
    await a.publish("order.created", 2)  # a stream nobody had seen
    await a.publish("order.paid", 3)
    await until(lambda: len(everything.events) == 3 and len(created.events) == 2)
    assert sorted(everything.data) == [1, 2, 3]
    assert sorted(created.data) == [1, 2]


async def test_handler_is_acknowledged_only_after_it_succeeds(
    make_bus: MakeBus, client: Redis, prefix: str
) -> None:
    """A handler failing twice is retried; its entry stays pending until it succeeds, then once."""
    a = await make_bus("a", retries=2)
    calls: list[int] = []
    release = asyncio.Event()

    async def flaky(event: Event) -> None:
        calls.append(event.attempt)
        if len(calls) <= 2:
            raise ConnectionError("payment gateway down")
        await release.wait()

    a.subscribe("order.paid", flaky, owner="billing")
    await ready(a)
    await a.publish("order.paid", {"order": 7})
    await until(lambda: len(calls) == 3)
    stream, group = f"{prefix}:stream:order", f"billing:order.paid:{flaky.__qualname__}"
    assert await pending(client, stream, group) == 1  # failed twice, now running: not acked
    release.set()
    await until_async(lambda: _no_pending(client, stream, group))
    assert calls == [1, 1, 1]  # local retries, not redeliveries
    assert len(a.dead_letters) == 0


async def test_a_handler_that_gives_up_is_dead_lettered_in_both_stores(
    make_bus: MakeBus, client: Redis, prefix: str
) -> None:
    """After its retries a failing event is in the bus's store and the dead-letter stream, acked."""
    a = await make_bus("a", retries=1)

    async def broken(event: Event) -> None:
        raise ValueError(f"cannot bill order {event.data['order']}")

    a.subscribe("order.paid", broken, owner="billing")
    await ready(a)
    event = await a.publish("order.paid", {"order": 9})
    dead_stream = f"{prefix}:dead"
    await until_async(lambda: _length_is(client, dead_stream, 1))
    [letter] = a.dead_letters.list()
    assert (letter.event.id, letter.attempts) == (event.id, 2)
    assert letter.error == "ValueError: cannot bill order 9"
    [(_, fields)] = await dead_letters(client, dead_stream)
    assert fields[b"error"] == b"ValueError: cannot bill order 9"
    assert fields[b"subscriber"] == f"billing:order.paid:{broken.__qualname__}".encode()
    assert fields[b"letter"] == letter.id.encode()
    assert fields[b"type"] == b"order.paid"
    assert event.id.encode() in fields[b"event"]
    group = f"billing:order.paid:{broken.__qualname__}"
    await until_async(lambda: _no_pending(client, f"{prefix}:stream:order", group))


async def dead_letters(client: Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of the dead-letter stream."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(stream)  # type: ignore[assignment]
    return entries


async def _length_is(client: Redis, stream: str, length: int) -> bool:
    return int(await client.xlen(stream)) == length


async def test_entries_delivered_too_often_are_dead_lettered_unhandled(
    make_bus: MakeBus, client: Redis, prefix: str
) -> None:
    """An entry whose consumers kept dying is dead-lettered past max_deliveries, not handled."""
    stream, group = f"{prefix}:stream:report", "reports:report.requested:Recorder"
    await client.xgroup_create(stream, group, id="$", mkstream=True)
    entry_id = await client.xadd(
        stream,
        {
            "type": "report.requested",
            "event": '{"id":"e-1","source":"reports","time":1.0,"cid":null,"priority":0,'
            '"data":{"size":"huge"}}',
        },
    )
    # A consumer reads it (delivery 1), then others claim it twice (3): all of them died.
    await client.xreadgroup(group, "ghost-1", {stream: ">"})
    for ghost in ("ghost-2", "ghost-3"):
        await client.xclaim(stream, group, ghost, 0, [entry_id])
    survivor = await make_bus("survivor", claim_idle=0.05, max_deliveries=3)
    handler = Recorder()
    survivor.subscribe("report.requested", handler, owner="reports")
    await until(lambda: len(survivor.dead_letters) == 1)
    [letter] = survivor.dead_letters.list()
    assert letter.event.id == "e-1"
    assert "delivered 4 times without being acknowledged" in letter.error
    assert "max_deliveries is 3" in letter.error
    assert handler.events == []
    await until_async(lambda: _no_pending(client, stream, group))
    await until_async(lambda: _length_is(client, f"{prefix}:dead", 1))


async def test_streams_are_trimmed_to_about_maxlen(
    make_bus: MakeBus, client: Redis, prefix: str
) -> None:
    """Publishing 20x maxlen events leaves the stream near maxlen (Redis trims whole nodes)."""
    a = await make_bus("a", maxlen=50)
    for start in range(0, 1000, 100):
        await asyncio.gather(*(a.publish("metric.sampled", n) for n in range(start, start + 100)))
    length = await client.xlen(f"{prefix}:stream:metric")
    assert 50 <= length <= 150  # within one node (100 entries) of the bound


async def test_publish_refuses_data_that_is_not_json(make_bus: MakeBus) -> None:
    """Events cross processes as JSON: other data fails at publish, naming the topic."""
    a = await make_bus("a")
    with pytest.raises(EventError, match=r"'file\.uploaded' cannot travel .* JSON-serialisable"):
        await a.publish("file.uploaded", {"handle": object()})


async def test_event_envelope_survives_the_trip(make_bus: MakeBus) -> None:
    """Id, source, time, correlation id, priority and data arrive as they were published."""
    a, b = await make_bus("a"), await make_bus("b")
    seen = Recorder()
    b.subscribe("user.created", seen, owner="mail", mode="broadcast")
    await ready(b)
    sent = await a.publish(
        "user.created", {"id": 7, "tags": ["x"]}, source="auth", priority=3, correlation_id="r-1"
    )
    await until(lambda: len(seen.events) == 1)
    assert seen.events[0] == sent


async def test_publish_and_wait_counts_a_delivery_made_by_another_instance(
    make_bus: MakeBus,
) -> None:
    """publish_and_wait on A returns once A or B handled the shared event, counted as delivered."""
    a, b = await make_bus("a"), await make_bus("b")
    on_a, on_b = Recorder(), Recorder()
    a.subscribe("job.done", on_a, owner="jobs")
    b.subscribe("job.done", on_b, owner="jobs")
    await ready(a, b)
    reports = [await a.publish_and_wait("job.done", n, timeout=10) for n in range(10)]
    assert [r.delivered for r in reports] == [1] * 10
    assert sorted(on_a.data + on_b.data) == list(range(10))


async def test_bus_health_reports_redis(make_bus: MakeBus, redis_server: Any) -> None:
    """The bus's health names the Redis server it uses and this instance's consumer name."""
    a = await make_bus("instance-7")
    health = await a.health()
    assert health.ok
    assert health.detail == f"Redis at {redis_server.url}"
    assert health.data["instance"] == "instance-7"


async def test_stopping_an_instance_leaves_no_consumer_behind(
    make_bus: MakeBus, client: Redis, prefix: str
) -> None:
    """A bus that closes with nothing pending removes its consumer; the group stays."""
    a = await make_bus("a")
    seen = Recorder()
    a.subscribe("user.created", seen, owner="mail")
    await ready(a)
    await a.publish("user.created", 1)
    await until(lambda: len(seen.events) == 1)
    await a.close()
    stream = f"{prefix}:stream:user"
    [group] = await client.xinfo_groups(stream)
    assert (group["name"], group["consumers"], group["pending"]) == (
        b"mail:user.created:Recorder",
        0,
        0,
    )


async def test_an_event_redis_refuses_raises_and_the_others_are_written(
    make_bus: MakeBus, client: Redis, prefix: str
) -> None:
    """A stream key holding another type fails its events alone, alone or within a burst."""
    a = await make_bus("a")
    await client.set(f"{prefix}:stream:broken", "not a stream")
    with pytest.raises(TransportError, match=r"refused to append it to .*WRONGTYPE"):
        await a.publish("broken.thing", 1)
    outcomes = await asyncio.gather(
        a.publish("fine.thing", 1), a.publish("broken.thing", 2), return_exceptions=True
    )
    assert isinstance(outcomes[0], Event)
    assert isinstance(outcomes[1], TransportError)
    assert "WRONGTYPE" in str(outcomes[1])
    assert await client.xlen(f"{prefix}:stream:fine") == 1


async def test_a_group_outlives_its_instances(make_bus: MakeBus) -> None:
    """Events published while no instance of a subscription runs are handled once one is back."""
    first = await make_bus("first")
    first.subscribe("invoice.*", Recorder(), owner="billing")
    await ready(first)
    await first.close()
    publisher = await make_bus("publisher")
    for n in range(5):
        await publisher.publish("invoice.issued", n)
    later = Recorder()
    restarted = await make_bus("restarted")  # another process, another instance id
    restarted.subscribe("invoice.*", later, owner="billing")
    await until(lambda: len(later.events) == 5)
    assert later.data == list(range(5))


async def test_an_instance_restarted_with_its_id_takes_back_its_entries_at_once(
    make_bus: MakeBus,
) -> None:
    """Entries a stopped instance held come back to it on restart, before any claim timeout."""
    release = asyncio.Event()
    taken: list[Event] = []

    async def slow(event: Event) -> None:
        taken.append(event)
        await release.wait()

    slow.__qualname__ = "slow"
    worker = await make_bus("worker-1", claim_idle=60)
    worker.subscribe("mail.send", slow, owner="mailer")
    await ready(worker)
    for n in range(3):
        await worker.publish("mail.send", n)
    await until(lambda: len(taken) == 1)
    await worker.close(grace=0.01)  # the three stay unacknowledged: the handler never finished

    again: list[Event] = []

    async def slow_again(event: Event) -> None:
        again.append(event)

    slow_again.__qualname__ = "slow"  # the same subscription, the same instance id
    restarted = await make_bus("worker-1", claim_idle=60)
    restarted.subscribe("mail.send", slow_again, owner="mailer")
    await until(lambda: len(again) == 3)
    assert [event.data for event in again] == [0, 1, 2]
    assert [event.attempt for event in again] == [2, 2, 2]
    assert all(event.redelivered for event in again)

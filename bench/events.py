"""Events per second, publish to delivery: Nexus's EventBus against a plain asyncio.Queue loop.

Both sides run the same tiny async handler on the same kind of event loop (uvloop when
installed), the producer awaiting each publish or put, in alternating rounds; the median of each
side is reported. The baseline for ten subscribers is ten `asyncio.Queue(1024)`s, each with a
consumer task. Time is the process's CPU time (as in PERF-NOTES), so other processes on a
busy machine disturb the ratio less; the loop never waits on I/O, so CPU time is all it uses.

    .venv/bin/python bench/events.py [--rounds 7] [--events 100000] [--events-ten 20000]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nexus.kernel.events import EventBus

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
    uvloop = None

TARGET_ONE_SUBSCRIBER_RATIO = 0.5
QUEUE_SIZE = 1024
TOPIC = "bench.tick"

Runner = Callable[[int, int], Awaitable[float]]


class Counter:
    """The handler both sides run: count, and resolve `done` at the expected total."""

    __slots__ = ("count", "done", "total")

    def __init__(self, total: int) -> None:
        self.count, self.total = 0, total
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handle(self, item: Any) -> None:
        self.count += 1
        if self.count == self.total:
            self.done.set_result(None)


async def run_nexus(events: int, subscribers: int) -> float:
    """CPU seconds to publish `events` events and have every subscriber handle each one."""
    counter = Counter(events * subscribers)
    bus = EventBus(queue_size=QUEUE_SIZE)
    for _ in range(subscribers):
        bus.subscribe(TOPIC, counter.handle)
    async with bus:
        publish = bus.publish
        await asyncio.sleep(0)  # let the workers reach their mailboxes
        start = time.process_time()
        for i in range(events):
            await publish(TOPIC, i)
        await counter.done
        return time.process_time() - start


async def run_queue(events: int, subscribers: int) -> float:
    """The same with `asyncio.Queue(1024)` per subscriber and a consumer task each."""
    counter = Counter(events * subscribers)
    handle = counter.handle

    async def consume(queue: asyncio.Queue[Any]) -> None:
        get = queue.get
        while True:
            await handle(await get())

    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(QUEUE_SIZE) for _ in range(subscribers)]
    consumers = [asyncio.create_task(consume(queue)) for queue in queues]
    await asyncio.sleep(0)
    start = time.process_time()
    if subscribers == 1:
        put = queues[0].put
        for i in range(events):
            await put(i)
    else:
        puts = [queue.put for queue in queues]
        for i in range(events):
            for put in puts:
                await put(i)
    await counter.done
    elapsed = time.process_time() - start
    for task in consumers:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    return elapsed


def measure(runner: Runner, events: int, subscribers: int) -> float:
    """Events per second for one fresh loop running `runner`."""
    gc.collect()
    run = uvloop.run if uvloop is not None else asyncio.run
    return events / run(runner(events, subscribers))


def compare(events: int, subscribers: int, rounds: int) -> dict[str, Any]:
    """Alternate Nexus and the baseline for `rounds` rounds; medians and their ratio."""
    measure(run_nexus, events // 10, subscribers)  # warm-up, not counted
    measure(run_queue, events // 10, subscribers)
    nexus: list[float] = []
    queue: list[float] = []
    for round_ in range(rounds):
        pair = [(run_nexus, nexus), (run_queue, queue)]
        for runner, results in pair if round_ % 2 == 0 else reversed(pair):
            results.append(measure(runner, events, subscribers))
    nexus_eps, queue_eps = statistics.median(nexus), statistics.median(queue)
    return {
        "events": events,
        "nexus_eps": round(nexus_eps),
        "queue_eps": round(queue_eps),
        "ratio": round(nexus_eps / queue_eps, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--events", type=int, default=100_000, help="per round, 1 subscriber")
    parser.add_argument("--events-ten", type=int, default=20_000, help="per round, 10 subscribers")
    args = parser.parse_args(argv)

    one = compare(args.events, 1, args.rounds)
    ten = compare(args.events_ten, 10, args.rounds)
    loop_name = "uvloop" if uvloop is not None else "asyncio"
    meets = one["ratio"] >= TARGET_ONE_SUBSCRIBER_RATIO

    python = sys.version.split()[0]
    print("Event dispatch, publish to delivery: events per CPU second, higher is better")
    print(f"({loop_name}, Python {python}, median of {args.rounds} alternating rounds)")
    print()
    print(f"{'subscribers':<12} {'events':>8} {'nexus ev/s':>12} {'queue ev/s':>12} {'ratio':>7}")
    for label, row in (("1", one), ("10", ten)):
        print(
            f"{label:<12} {row['events']:>8} {row['nexus_eps']:>12,} {row['queue_eps']:>12,} "
            f"{row['ratio']:>7.2f}"
        )
    print()
    verdict = "met" if meets else "NOT met"
    print(
        f"target, 1 subscriber: nexus >= {TARGET_ONE_SUBSCRIBER_RATIO}x the queue loop: {verdict}"
    )
    print(
        json.dumps(
            {
                "bench": "events",
                "loop": loop_name,
                "clock": "process_time",
                "rounds": args.rounds,
                "one_subscriber": one,
                "ten_subscribers": ten,
                "target_one_subscriber_ratio": TARGET_ONE_SUBSCRIBER_RATIO,
                "meets_target": meets,
            }
        )
    )
    return 0 if meets else 1


if __name__ == "__main__":
    sys.exit(main())

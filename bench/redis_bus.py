"""Events per second and latency across processes: Nexus's redis transport against bare redis-py.

Each run is two processes on one redis-server of the benchmark's own (a free loopback port,
no persistence): a publisher publishes, a consumer handles. The event data carries the
publisher's CLOCK_MONOTONIC timestamp (shared by all processes on Linux), so latency is
publish call -> handler, and events/s is events / (last handled - first published).

- nexus: `EventBus(RedisTransport(...))` on both sides; the publisher awaits bursts of `--batch`
  concurrent `bus.publish` calls (the transport appends each burst with one Lua script call:
  XADD per event, one XTRIM); the consumer is a shared subscription (consumer group, read
  `--batch` at a time, acknowledged in batches after the handler).
- bare: the same entries (the same fields and JSON) with redis-py alone, as one would write
  it by hand: a pipeline of `--batch` XADDs (MAXLEN ~) per round trip; XREADGROUP COUNT
  `--batch`, decode, handle, one XACK.

Two kinds of run: flood (`--events` as fast as they go: events/s, and a latency that is
mostly queueing) and paced (`--paced-events` published one by one at `--paced-rate`: the
latency of an event on a quiet bus). Sides alternate, `--rounds` each, medians reported; the
target is on flood events/s. Process start-up is not measured. The publisher is pinned to
CPU 1 and the consumer to CPU 0 (taskset, as in PERF-NOTES); each also reports its CPU time
per event, which other load on a shared machine disturbs far less than events/s.

    .venv/bin/python bench/redis_bus.py [--rounds 5] [--events 20000] [--batch 100]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TARGET_RATIO = 0.7
TOPIC = "bench.tick"
GROUP = "bench:bench.tick:Consumer.handle"  # what the nexus side's subscription is named
OWNER = "bench"


def now() -> float:
    """Seconds on CLOCK_MONOTONIC, which every process of the machine shares."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class Consumer:
    """The handler of both sides: latency of each event, done at the expected count."""

    def __init__(self, total: int) -> None:
        self.total, self.count = total, 0
        self.latencies: list[float] = []
        self.first_sent = float("inf")
        self.finished = self.cpu_start = self.cpu = 0.0
        self.done = asyncio.get_running_loop().create_future()

    async def handle(self, event: Any) -> None:
        self.seen(event.data["t"])

    def seen(self, sent: float) -> None:
        received = now()
        if not self.count:
            self.cpu_start = time.process_time()
        self.latencies.append(received - sent)
        self.first_sent = min(self.first_sent, sent)
        self.count += 1
        if self.count == self.total:
            self.finished = received
            self.cpu = time.process_time() - self.cpu_start
            self.done.set_result(None)

    def report(self) -> dict[str, float]:
        latencies = sorted(self.latencies)
        return {
            "events": self.count,
            "eps": self.count / (self.finished - self.first_sent),
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "consumer_cpu_us": self.cpu / self.count * 1e6,
        }


# -- the nexus side --------------------------------------------------------------------------


def nexus_bus(url: str, prefix: str, batch: int, instance: str) -> Any:
    from nexus.kernel.events import EventBus
    from nexus.redis import RedisTransport

    transport = RedisTransport(url, prefix=prefix, batch=batch, instance_id=instance)
    return EventBus(transport, queue_size=max(1000, 2 * batch)), transport


async def paced(events: int, burst: int, rate: float) -> AsyncIterator[tuple[int, int]]:
    """(first event number, burst size) for each burst, at `rate` events/s (0: flat out)."""
    start = now()
    for first in range(0, events, burst):
        if rate:
            delay = start + first / rate - now()
            if delay > 0:
                await asyncio.sleep(delay)
        yield first, min(burst, events - first)


async def nexus_consumer(
    url: str, prefix: str, events: int, batch: int, rate: float
) -> dict[str, float]:
    bus, transport = nexus_bus(url, prefix, batch, "consumer")
    consumer = Consumer(events)
    bus.subscribe(TOPIC, consumer.handle, owner=OWNER)
    async with bus:
        await transport.ready(timeout=30)
        print("ready", flush=True)
        await consumer.done
    return consumer.report()


async def nexus_publisher(
    url: str, prefix: str, events: int, batch: int, rate: float
) -> dict[str, float]:
    bus, _ = nexus_bus(url, prefix, batch, "publisher")
    async with bus:
        publish = bus.publish
        cpu = time.process_time()
        async for start, burst in paced(events, 1 if rate else batch, rate):
            if burst == 1:
                await publish(TOPIC, {"t": now(), "n": start})
                continue
            await asyncio.gather(
                *(publish(TOPIC, {"t": now(), "n": start + i}) for i in range(burst))
            )
        cpu = time.process_time() - cpu
    return {"publisher_cpu_us": cpu / events * 1e6}


# -- the bare side ---------------------------------------------------------------------------


def bare_fields(n: int, sent: float) -> dict[bytes, bytes]:
    """The entry the transport writes for the same event (the same fields and JSON)."""
    body = {"id": f"bare-{n}", "source": "nexus", "time": time.time(), "cid": None}
    body.update({"priority": 0, "data": {"t": sent, "n": n}})
    return {b"type": TOPIC.encode(), b"event": orjson.dumps(body)}


async def bare_consumer(
    url: str, prefix: str, events: int, batch: int, rate: float
) -> dict[str, float]:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    stream = f"{prefix}:stream:bench"
    await client.xgroup_create(stream, GROUP, id="$", mkstream=True)
    consumer = Consumer(events)
    print("ready", flush=True)
    while consumer.count < events:
        response = await client.xreadgroup(
            GROUP, "consumer", {stream: ">"}, count=batch, block=1000
        )
        for _, entries in response or ():
            ids = []
            for entry_id, fields in entries:
                if fields[b"type"].decode() == TOPIC:
                    body = orjson.loads(fields[b"event"])
                    consumer.seen(body["data"]["t"])
                ids.append(entry_id)
            await client.xack(stream, GROUP, *ids)
    await client.aclose()
    return consumer.report()


async def bare_publisher(
    url: str, prefix: str, events: int, batch: int, rate: float
) -> dict[str, float]:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    stream = f"{prefix}:stream:bench"
    cpu = time.process_time()
    async for start, burst in paced(events, 1 if rate else batch, rate):
        if burst == 1:
            await client.xadd(stream, bare_fields(start, now()), maxlen=100_000)  # type: ignore[arg-type]
            continue
        pipe = client.pipeline(transaction=False)
        for n in range(start, start + burst):
            pipe.xadd(stream, bare_fields(n, now()), maxlen=100_000)  # type: ignore[arg-type]
        await pipe.execute()
    cpu = time.process_time() - cpu
    await client.aclose()
    return {"publisher_cpu_us": cpu / events * 1e6}


ROLES = {
    ("nexus", "consumer"): nexus_consumer,
    ("nexus", "publisher"): nexus_publisher,
    ("bare", "consumer"): bare_consumer,
    ("bare", "publisher"): bare_publisher,
}


def run_role(args: argparse.Namespace) -> int:
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        run = asyncio.run
    role = ROLES[args.side, args.role]
    result = run(role(args.url, args.prefix, args.events, args.batch, args.rate))
    if result is not None:
        print(json.dumps(result), flush=True)
    return 0


# -- the orchestration -----------------------------------------------------------------------


def one_run(
    side: str, url: str, prefix: str, events: int, batch: int, rate: float = 0.0
) -> dict[str, float]:
    """Start a consumer, then a publisher, and return what both measured."""
    common = [
        *("--side", side, "--url", url, "--prefix", prefix),
        *("--events", str(events), "--batch", str(batch), "--rate", str(rate)),
    ]
    script = [sys.executable, str(Path(__file__).resolve())]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    consumer = subprocess.Popen(
        pinned("0", [*script, "--role", "consumer", *common]),
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert consumer.stdout is not None
        if consumer.stdout.readline().strip() != "ready":
            raise SystemExit(f"the {side} consumer did not start")
        published = subprocess.run(
            pinned("1", [*script, "--role", "publisher", *common]),
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
        output, _ = consumer.communicate(timeout=300)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    result.update(json.loads(published.stdout.strip().splitlines()[-1]))
    return result


def pinned(cpu: str, command: list[str]) -> list[str]:
    """`command` pinned to `cpu` with taskset, when there is one and two CPUs or more."""
    taskset = shutil.which("taskset")
    if taskset is None or (os.cpu_count() or 1) < 2:
        return command
    return [taskset, "-c", cpu, *command]


MODES = ("flood", "paced")
KEYS = ("eps", "p50_ms", "p99_ms", "publisher_cpu_us", "consumer_cpu_us")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000, help="per flood run")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s of a paced run")
    parser.add_argument("--paced-rate", type=float, default=1000.0)
    parser.add_argument("--paced-events", type=int, default=2000)
    parser.add_argument("--role", choices=["main", "consumer", "publisher"], default="main")
    parser.add_argument("--side", choices=["nexus", "bare"])
    parser.add_argument("--url")
    parser.add_argument("--prefix")
    args = parser.parse_args(argv)
    if args.role != "main":
        return run_role(args)

    from nexus.testing.servers import start_redis

    runs = {
        "flood": (args.events, 0.0),
        "paced": (args.paced_events, args.paced_rate),
    }
    results: dict[tuple[str, str], list[dict[str, float]]] = {
        (mode, side): [] for mode in MODES for side in ("nexus", "bare")
    }
    server = start_redis()
    try:
        from redis import Redis

        admin = Redis.from_url(server.url)
        one_run("nexus", server.url, "warmup-n", args.events // 10, args.batch)
        one_run("bare", server.url, "warmup-b", args.events // 10, args.batch)
        for round_ in range(args.rounds):
            order = ("nexus", "bare") if round_ % 2 == 0 else ("bare", "nexus")
            for mode in MODES:
                events, rate = runs[mode]
                for side in order:
                    admin.flushall()
                    prefix = f"bench-{mode}-{side}-{round_}"
                    result = one_run(side, server.url, prefix, events, args.batch, rate)
                    results[mode, side].append(result)
                    print(
                        f"  round {round_ + 1} {mode:<5} {side:<6} {result['eps']:9,.0f} ev/s  "
                        f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                        f"CPU/event: publisher {result['publisher_cpu_us']:5.1f} us, "
                        f"consumer {result['consumer_cpu_us']:5.1f} us",
                        flush=True,
                    )
        admin.close()
    finally:
        server.stop()

    summary = {
        f"{mode}_{side}": {
            key: round(statistics.median(run[key] for run in results[mode, side]), 3)
            for key in KEYS
        }
        for mode, side in results
    }
    ratio = summary["flood_nexus"]["eps"] / summary["flood_bare"]["eps"]
    meets = ratio >= TARGET_RATIO
    python = sys.version.split()[0]
    print()
    print("Redis Streams bus, publisher process -> consumer process (one consumer group)")
    print(
        f"(flood: {args.events} events per run in bursts of {args.batch}; paced: "
        f"{args.paced_events} events one by one at {args.paced_rate:g}/s; Python {python}; "
        f"median of {args.rounds} alternating rounds)"
    )
    print()
    print(
        f"{'mode':<6} {'side':<6} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'pub CPU us/ev':>14} {'con CPU us/ev':>14}"
    )
    for mode in MODES:
        for side in ("nexus", "bare"):
            row = summary[f"{mode}_{side}"]
            print(
                f"{mode:<6} {side:<6} {row['eps']:>10,.0f} {row['p50_ms']:>8.2f} "
                f"{row['p99_ms']:>8.2f} {row['publisher_cpu_us']:>14.1f} "
                f"{row['consumer_cpu_us']:>14.1f}"
            )
    print()
    verdict = "met" if meets else "NOT met"
    print(f"flood ratio nexus / bare events/s: {ratio:.2f} (target >= {TARGET_RATIO}: {verdict})")
    print(
        json.dumps(
            {
                "bench": "redis_bus",
                "rounds": args.rounds,
                "events": args.events,
                "batch": args.batch,
                "paced_rate": args.paced_rate,
                "paced_events": args.paced_events,
                **summary,
                "ratio": round(ratio, 3),
                "target_ratio": TARGET_RATIO,
                "meets_target": meets,
            }
        )
    )
    return 0 if meets else 1


if __name__ == "__main__":
    sys.exit(main())

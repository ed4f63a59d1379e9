"""Latency at a fixed rate: completion produced → next step command visible to a consumer.

M instances are started first, and a first round of completions goes through unmeasured; then
`rounds` rounds each send one completion per instance (the next step of its path) at
`latency_rate`/s. A round takes M / rate seconds, so an instance's previous command has long
arrived when its next completion goes out. Per instance the k-th new command answers the k-th
completion.

`visible_ms`: our consumer's read time − the send time (one clock, one process).
A second, light run at 50/s (100 instances, 5 rounds) shows the hop without queueing.

`produced_ms`: the command's CreateTime (stamped by the router's producer, 1 ms resolution)
− the send time: the same without our consumer's fetch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaProducer

from bench import workload
from bench.context import Context
from bench.kafka_io import Seen, TopicReader, produce_all
from bench.machine import CpuMeter
from bench.pacing import paced_send
from bench.stack import Routers, bench_settings, prepare
from bench.stats import percentiles

LIGHT_RATE = 50.0  # completions/s: far below capacity, so no queueing in the numbers
LIGHT_INSTANCES = 100  # × 5 rounds: 500 samples, 10 s


async def run(ctx: Context) -> dict[str, Any]:
    """At the target rate (the issue's 1,000/s) and at a light rate (no queueing)."""
    sizes = ctx.sizes
    result = await run_at(ctx, sizes.latency_rate, sizes.latency_instances, sizes.latency_rounds)
    result["light"] = await run_at(ctx, LIGHT_RATE, LIGHT_INSTANCES, 5)
    return result


async def run_at(ctx: Context, rate: float, m: int, rounds: int) -> dict[str, Any]:
    m = int(m)
    settings = bench_settings(ctx, "l")
    await prepare(settings)
    meter = CpuMeter()
    meter.track(ctx.broker_pid, "broker")
    routers = Routers.of(settings, meter)
    sent: dict[bytes, list[float]] = defaultdict(list)
    got: dict[bytes, list[Seen]] = defaultdict(list)
    measuring = [False]

    def on_record(seen: Seen) -> None:
        if measuring[0]:
            got[seen.key].append(seen)

    # Tansu's fetch polls, so our reader polls often there (else its poll is in the figure);
    # Apache Kafka answers a waiting fetch as soon as a command arrives.
    wait = 5 if ctx.broker_kind == "tansu" else settings.fetch_max_wait_ms
    reader = await TopicReader(ctx.bootstrap, settings.commands_topic, fetch_max_wait_ms=wait,
                               keep=False, on_record=on_record).start()
    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, linger_ms=0, acks="all")
    result: dict[str, Any] = {"instances": m, "rounds": rounds, "target_rate": rate}
    tag = settings.topic_prefix.rstrip(".")
    try:
        await routers.start(1)
        await produce_all(ctx.bootstrap, settings.requests_topic, workload.starts(tag, m))
        if not await reader.wait_for(m, within=60 + m / 50):
            raise RuntimeError(f"only {len(reader.distinct)}/{m} start commands arrived")
        await producer.start()
        # One round at the rate, not measured: the first second after a start pays for paths
        # taken the first time (at 50/s, batches of 2-6 records took 50-116 ms to route
        # there, under 5 ms after; session 10). The figures are the steady state's.
        ctx.say(f"latency: a warm-up round of {m} completions at {rate:.0f}/s")
        warm = workload.completions(tag, m, rounds=1)
        await paced_send(producer, settings.completions_topic, warm, rate)
        if not await reader.wait_for(2 * m, within=30 + m / 50):
            raise RuntimeError(f"only {len(reader.distinct) - m}/{m} warm-up commands arrived")
        measuring[0] = True
        ctx.say(f"latency: {rounds} rounds × {m} completions at {rate:.0f}/s")
        began = time.monotonic()
        count = 0
        for r in range(1, rounds + 1):
            records = workload.completions(tag, m, rounds=r + 1)[r * m:]
            count += await paced_send(producer, settings.completions_topic, records, rate,
                                      on_sent=lambda rec, t: sent[rec.key].append(t))
        result["achieved_rate"] = round(count / (time.monotonic() - began), 1)
        # Generous: below its capacity the router drains a backlog at its own pace.
        if not await reader.wait_for(2 * m + count, within=30 + count / 50):
            result["missing"] = 2 * m + count - len(reader.distinct)
        visible, produced = [], []
        for key, times in sent.items():
            for t_sent, seen in zip(times, got.get(key, []), strict=False):
                visible.append(1000 * (seen.read_at - t_sent))
                produced.append(seen.create_ms - 1000 * t_sent)
        result["visible_ms"] = percentiles(visible)
        result["produced_ms"] = percentiles(produced)
    finally:
        await producer.stop()
        await routers.stop()
        await reader.stop()
        result["cpu"] = meter.report()
    return result

"""Latency at a fixed rate: completion produced → next step command visible to a consumer.

2 × M instances are started first. M other instances go through `WARM_ROUNDS` rounds at the
rate, unmeasured, then the measured M make a first round, unmeasured too; then `rounds` rounds
each send one completion per instance (the next step of its path) at `latency_rate`/s. A round
takes M / rate seconds, so an instance's previous command has long arrived when its next
completion goes out. Per instance the k-th new command answers the k-th completion.

Why the other instances first: a JVM compiles its hot code as traffic reaches it. After the
bench's generic warm-up and one round, the broker's JIT compiler threads still took 0.14 of a
core through the measured rounds (0.2-0.5 in their first three seconds), on two cores the
router shares with the broker and the bench (bench/results/NOTES.md, session 18); after three
rounds more, 0.03-0.06. A broker in service has long compiled them, as `inbox.py` says too;
`broker_jit_cores` says how far the measured rounds met one like it.

`visible_ms`: our consumer's read time − the send time (one clock, one process).
A second, light run at 50/s (`Sizes.light_instances` instances, 5 rounds) shows the hop
without queueing. The rate is also run with two router workers, and both rates through the
raw loop (bench/rawloop.py: a plain aiokafka consume → produce process with the router's
fetch wait, linger and commit interval): what a hop costs on this machine and broker before
any routing.

`machine_during`: `bench/calibrate.py`'s fixed work, timed in slices through the measured
rounds (the same unit as the figure timed before the scenario): at 1,000/s the router is
~0.9 of a core busy here, so a machine running slower meanwhile saturates it.

`produced_ms`: the command's CreateTime (stamped by the router's producer, 1 ms resolution)
− the send time: the same without our consumer's fetch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

from aiokafka import AIOKafkaProducer

from bench import calibrate, workload
from bench.context import Context
from bench.gcpause import no_collections
from bench.kafka_io import Seen, TopicReader, produce_all
from bench.machine import CpuMeter
from bench.pacing import paced_send
from bench.scenarios.raw import RawLoop
from bench.stack import Routers, bench_settings, drop_topics, prepare
from bench.stats import percentiles
from services.common.settings import Settings
from services.router.app import COMMIT_INTERVAL

LIGHT_RATE = 50.0  # completions/s: far below capacity, so no queueing in the numbers
LIGHT_ROUNDS = 5  # × `Sizes.light_instances` (100: 500 samples, 10 s)
WARM_ROUNDS = 3  # of M other instances, before the measured ones' first round (9 s at 1,000/s)


async def run(ctx: Context) -> dict[str, Any]:
    """The router at the target rate (the issue's 1,000/s) with one worker and with two, and
    at a light rate (no queueing); the raw loop at both rates, the hop's floor here."""
    sizes = ctx.sizes
    rate, m, rounds = sizes.latency_rate, int(sizes.latency_instances), sizes.latency_rounds
    result = await run_at(ctx, Routed(1), rate, m, rounds)
    result["two_workers"] = await run_at(ctx, Routed(2), rate, m, rounds)
    light = sizes.light_instances
    result["light"] = await run_at(ctx, Routed(1), LIGHT_RATE, light, LIGHT_ROUNDS)
    result["raw"] = await run_at(ctx, Raw(), rate, m, rounds)
    result["raw_light"] = await run_at(ctx, Raw(), LIGHT_RATE, light, LIGHT_ROUNDS)
    return result


@dataclass
class Routed:
    """Router workers; each instance is started first (one start command each)."""

    workers: int
    label: ClassVar[str] = "router"
    starts: ClassVar[bool] = True
    routers: Routers | None = None

    async def start(self, settings: Settings, meter: CpuMeter) -> None:
        await prepare(settings)
        self.routers = Routers.of(settings, meter)
        await self.routers.start(self.workers)

    async def stop(self, meter: CpuMeter) -> None:
        if self.routers is not None:
            await self.routers.stop()


@dataclass
class Raw:
    """The raw loop (bench/rawloop.py) with the router's fetch wait, linger and commit
    interval: no starts; it answers each completion with one command on the same key."""

    label: ClassVar[str] = "raw loop"
    starts: ClassVar[bool] = False
    loop: RawLoop | None = None

    async def start(self, settings: Settings, meter: CpuMeter) -> None:
        self.loop = RawLoop(settings)
        await self.loop.prepare()
        await self.loop.start(meter, "--fetch-max-wait-ms", str(settings.fetch_max_wait_ms),
                              "--linger-ms", str(settings.router_linger_ms),
                              "--commit-interval-ms", str(1000 * COMMIT_INTERVAL))

    async def stop(self, meter: CpuMeter) -> None:
        if self.loop is not None:
            await self.loop.stop(meter)


async def run_at(ctx: Context, subject: Routed | Raw, rate: float, m: int,
                 rounds: int) -> dict[str, Any]:
    settings = bench_settings(ctx, "l")
    meter = CpuMeter()
    meter.track(ctx.broker_pid, "broker")
    sent: dict[bytes, list[float]] = defaultdict(list)
    got: dict[bytes, list[Seen]] = defaultdict(list)
    measuring = [False]

    def on_record(seen: Seen) -> None:
        if measuring[0]:
            got[seen.key].append(seen)

    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, linger_ms=0, acks="all")
    result: dict[str, Any] = {"instances": m, "rounds": rounds, "target_rate": rate}
    if isinstance(subject, Routed):
        result["workers"] = subject.workers
    tag = settings.topic_prefix.rstrip(".")
    reader: TopicReader | None = None
    try:
        await subject.start(settings, meter)
        # Tansu's fetch polls, so our reader polls often there (else its poll is in the
        # figure); Apache Kafka answers a waiting fetch as soon as a command arrives.
        wait = 5 if ctx.broker_kind == "tansu" else settings.fetch_max_wait_ms
        reader = await TopicReader(ctx.bootstrap, settings.commands_topic,
                                   fetch_max_wait_ms=wait, keep=False,
                                   on_record=on_record).start()
        warm_tag = f"{tag}w"  # the instances that warm the broker up, unmeasured
        before = 0
        if subject.starts:
            await produce_all(ctx.bootstrap, settings.requests_topic,
                              workload.starts(warm_tag, m) + workload.starts(tag, m))
            before = 2 * m
            if not await reader.wait_for(before, within=60 + before / 50):
                raise RuntimeError(
                    f"only {len(reader.distinct)}/{before} start commands arrived")
        await producer.start()
        # Every round's records built now: building one took long enough (~0.3 s at 3,000
        # instances) to stop the sender between rounds, lowering the achieved rate.
        records = workload.completions(tag, m, rounds=rounds + 1)
        # Unmeasured: the other instances' rounds (the broker's JIT meets this traffic), then
        # the measured ones' first round: the first second after a start pays for paths taken
        # the first time (at 50/s, batches of 2-6 records took 50-116 ms to route there,
        # under 5 ms after; session 10). The figures are the steady state's.
        warm = workload.completions(warm_tag, m, rounds=WARM_ROUNDS) + records[:m]
        ctx.say(f"latency, {subject.label}: warm-up: {WARM_ROUNDS} rounds of {m} other "
                f"instances, then the measured ones' first, at {rate:.0f}/s")
        began = time.monotonic()
        await paced_send(producer, settings.completions_topic, warm, rate)
        if not await reader.wait_for(before + len(warm), within=60 + len(warm) / 50):
            raise RuntimeError(f"only {len(reader.distinct) - before}/{len(warm)} warm-up "
                               "commands arrived")
        result["warmup"] = {"completions": len(warm),
                            "seconds": round(time.monotonic() - began, 1)}
        before += len(warm)
        ctx.say(f"latency, {subject.label}: {rounds} rounds × {m} completions at {rate:.0f}/s")
        # The bench's clock must not stop (bench/gcpause.py); the machine's speed meanwhile
        # (bench/calibrate.py's `Probe`) says whether it slowed down under the figures.
        with no_collections(result), calibrate.Probe() as probe:
            measuring[0] = True
            phase = CpuMeter()  # the broker's compiler threads meanwhile: ~0 once it is warm
            phase.track(ctx.broker_pid, "broker")
            began = time.monotonic()
            count = 0
            for r in range(1, rounds + 1):
                count += await paced_send(producer, settings.completions_topic,
                                          records[r * m:(r + 1) * m], rate,
                                          on_sent=lambda rec, t: sent[rec.key].append(t))
            result["achieved_rate"] = round(count / (time.monotonic() - began), 1)
            if "broker" in (jit := phase.report()["jit_cores_by_process"]):
                result["broker_jit_cores"] = jit["broker"]
            # Generous: below its capacity the subject drains a backlog at its own pace.
            if not await reader.wait_for(before + count, within=30 + count / 50):
                result["missing"] = before + count - len(reader.distinct)
        result["machine_during"] = probe.summary()
        visible, produced = [], []
        for key, times in sent.items():
            for t_sent, seen in zip(times, got.get(key, []), strict=False):
                visible.append(1000 * (seen.read_at - t_sent))
                produced.append(seen.create_ms - 1000 * t_sent)
        result["visible_ms"] = percentiles(visible)
        result["produced_ms"] = percentiles(produced)
    finally:
        await producer.stop()
        await subject.stop(meter)
        if reader is not None:
            await reader.stop()
        result["cpu"] = meter.report()
        await drop_topics(ctx, settings.topic_prefix)  # the next run finds only its own
    return result

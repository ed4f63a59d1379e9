"""One Flowline for one scenario: fresh topic prefix, topics, a published process version,
and router processes run through `services.devstack.Stack` exactly as in production."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from dataclasses import dataclass

from bench.context import Context
from bench.disk import partition_dirs
from bench.kafka_io import delete_topics
from bench.machine import TICKS, CpuMeter, process_ticks, rss_mb
from bench.workload import definition_record, process_version
from services.common.brokers import fetch_max_wait_ms
from services.common.kafka import EventProducer, create_topics
from services.common.settings import Settings
from services.devstack import Stack

# An external broker keeps deleted topics' files for Kafka's default 60 s; wait a little longer.
FILES_GONE_WITHIN = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_settings(ctx: Context, tag: str) -> Settings:
    """A scenario's settings: its own topic prefix and data dir, the fetch wait for its broker."""
    prefix = f"b{tag}{uuid.uuid4().hex[:6]}."
    ctx.prefixes.append(prefix)
    return Settings(kafka_bootstrap=ctx.bootstrap, topic_prefix=prefix,
                    partitions=ctx.sizes.partitions, data_dir=ctx.work_dir / prefix.rstrip("."),
                    router_web_port=free_port(),
                    fetch_max_wait_ms=fetch_max_wait_ms(ctx.broker_kind),
                    log_level="WARNING")


async def drop_topics(ctx: Context, *prefixes: str) -> None:
    """Delete the topics of `prefixes` (default: every one the scenario made so far).

    A deployment's broker holds its own topics; one left with every earlier run's (hundreds of
    partitions) answered a few records in each run ~30 ms late: at 50/s, p99 29-37 ms
    through the router and through the raw loop alike, 7-11 ms with only the run's own
    topics (session 11, bench/results/NOTES.md).

    Then wait until Apache Kafka has removed their files too. It does that
    `log.segment.delete.delay.ms` after the deletion (1 s on the brokers Flowline starts,
    Kafka's default 60 s elsewhere), but never in a broker's first 30 s, when its deletion task
    has not yet run: removing the `raw` run's 48 partition directories in the middle of the
    latency run's measured rounds raised their p99 (session 18).
    """
    chosen = list(prefixes or ctx.prefixes)
    await delete_topics(ctx.bootstrap, chosen)
    ctx.prefixes[:] = [p for p in ctx.prefixes if p not in chosen]
    began = time.monotonic()
    while left := partition_dirs(ctx.broker_data_dir, tuple(chosen)):
        if time.monotonic() - began > FILES_GONE_WITHIN:
            ctx.say(f"the broker still holds {len(left)} deleted partition directories after "
                    f"{FILES_GONE_WITHIN:.0f}s (e.g. {left[0]}); going on")
            return
        await asyncio.sleep(0.2)  # polling the broker's data dir, not waiting for a result
    if (waited := time.monotonic() - began) > 2:
        ctx.say(f"waited {waited:.1f}s for the broker to remove the deleted topics' files")


def stack_settings(ctx: Context, tag: str) -> Settings:
    """`bench_settings` with free ports for the HTTP services: for a scenario running them all."""
    return bench_settings(ctx, tag).model_copy(update={
        "gateway_port": free_port(), "definitions_url": f"http://127.0.0.1:{free_port()}",
        "tasks_url": f"http://127.0.0.1:{free_port()}"})


async def prepare(settings: Settings) -> None:
    """Create the topics and publish the process version, as an approval would."""
    await create_topics(settings)
    record = definition_record(process_version())
    producer = EventProducer(settings, "bench")
    await producer.start()
    try:
        await producer.send_raw(settings.definitions_topic, record.key, record.value,
                                record.headers)
    finally:
        await producer.stop()


@dataclass
class Routers:
    """Router worker processes (one per `Stack`, i.e. per worker) for a scenario."""

    settings: Settings
    meter: CpuMeter
    stacks: list[Stack]

    @classmethod
    def of(cls, settings: Settings, meter: CpuMeter) -> Routers:
        return cls(settings, meter, [])

    async def start(self, workers: int = 1, within: float = 90) -> float:
        """Start `workers` routers and return the seconds until all answer /healthz."""
        started = time.monotonic()
        for n in range(len(self.stacks), workers):
            # Each worker needs its own web port and data dir; same group, same topics.
            s = self.settings.model_copy(update={
                "router_web_port": self.settings.router_web_port if n == 0 else free_port(),
                "data_dir": self.settings.data_dir / f"w{n}"})
            self.stacks.append(Stack(s))
        for stack in self.stacks:
            if "router" not in stack.procs:
                await asyncio.to_thread(stack.start, ("router",), within)
                self.meter.track(self.pid(stack), "router")
        return time.monotonic() - started

    @staticmethod
    def pid(stack: Stack) -> int | None:
        proc = stack.procs.get("router")
        return proc.pid if proc else None

    @property
    def pids(self) -> list[int]:
        return [p for s in self.stacks if (p := self.pid(s))]

    def rss_mb(self) -> float:
        return sum(rss_mb(p) for p in self.pids)

    def cpu_seconds(self) -> float:
        return sum(process_ticks(p) for p in self.pids) / TICKS

    async def kill(self, n: int = 0) -> None:
        """kill -9 worker n (a crash: no shutdown, no final commit)."""
        self.meter.retire(self.pid(self.stacks[n]))
        await asyncio.to_thread(self.stacks[n].kill, "router")

    async def restart(self, n: int = 0, within: float = 90) -> float:
        started = time.monotonic()
        stack = self.stacks[n]
        await asyncio.to_thread(stack.start, ("router",), within)
        self.meter.track(self.pid(stack), "router")
        return time.monotonic() - started

    async def stop(self) -> None:
        for stack in self.stacks:
            for pid in [self.pid(stack)]:
                self.meter.retire(pid)
            await asyncio.to_thread(stack.stop)

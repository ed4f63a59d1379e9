"""The raw limit: the same completions through a plain aiokafka loop (bench/rawloop.py).

Same topic names and partition counts, byte-identical input records, and per input the same
number and sizes of output records the router writes (command, instance events, state).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from bench import workload
from bench.context import Context
from bench.kafka_io import TopicReader, produce_all, rate_between
from bench.machine import REPO, CpuMeter, cpu_seconds
from bench.stack import bench_settings
from services.common.brokers import ensure_topics
from services.common.settings import Settings


@dataclass
class RawLoop:
    """The raw loop as a process, on a scenario's topics (created by `prepare`)."""

    settings: Settings
    shape: workload.OutputShape = field(default_factory=workload.router_output_shape)
    proc: asyncio.subprocess.Process | None = None

    @property
    def state_topic(self) -> str:
        return f"{self.settings.topic_prefix}raw-state"

    async def prepare(self) -> None:
        s = self.settings
        await ensure_topics(s.kafka_bootstrap, [
            (topic, s.partitions, {}) for topic in (
                s.completions_topic, s.commands_topic, s.instance_events_topic,
                self.state_topic)])

    async def start(self, meter: CpuMeter, *options: str) -> asyncio.subprocess.Process:
        """Start the loop (`options`: rawloop's flags) and book its CPU in `meter`."""
        s = self.settings
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.rawloop", s.kafka_bootstrap, s.completions_topic,
            f"{s.topic_prefix}raw", s.commands_topic, s.instance_events_topic,
            self.state_topic, json.dumps(dataclasses.asdict(self.shape)), *options, cwd=REPO)
        meter.track(self.proc.pid, "raw loop")
        return self.proc

    async def stop(self, meter: CpuMeter) -> None:
        if self.proc is not None and self.proc.returncode is None:
            meter.retire(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), 30)


async def run(ctx: Context) -> dict[str, Any]:
    n = ctx.sizes.instances
    settings = bench_settings(ctx, "r")
    loop = RawLoop(settings)
    await loop.prepare()
    shape = loop.shape
    meter = CpuMeter()
    meter.track(ctx.broker_pid, "broker")
    completions = workload.completions(settings.topic_prefix.rstrip("."), n)
    reader = await TopicReader(ctx.bootstrap, settings.commands_topic,
                               fetch_max_wait_ms=settings.fetch_max_wait_ms).start()
    result: dict[str, Any] = {"completions": len(completions),
                              "output_shape": dataclasses.asdict(shape)}
    try:
        result["preload_s"] = round(await produce_all(
            ctx.bootstrap, settings.completions_topic, completions), 2)
        ctx.say(f"raw: {len(completions)} completions pre-loaded; starting the raw loop")
        proc = await loop.start(meter)
        broker0 = cpu_seconds(ctx.broker_pid)
        want = len(completions)
        waiting = asyncio.create_task(reader.wait_for(want, within=60 + want / 500))
        exited = asyncio.create_task(proc.wait())
        await asyncio.wait({waiting, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            waiting.cancel()
            raise RuntimeError(f"raw loop exited with {proc.returncode} (its traceback above)")
        exited.cancel()
        if not waiting.result():
            raise RuntimeError(f"raw loop: only {len(reader.distinct)}/{want} outputs")
        result.update(rate_between(reader.seen))
        # Per completion, as the throughput scenario books the router's and the broker's (the
        # loop's own start, imports and connections, is in it: ~0.5 s of CPU in all).
        result["raw_loop_cpu_ms_per_completion"] = round(1000 * cpu_seconds(proc.pid) / want, 3)
        if ctx.broker_pid:
            result["broker_cpu_ms_per_completion"] = round(
                1000 * (cpu_seconds(ctx.broker_pid) - broker0) / want, 3)
        result["records_written_per_second"] = round(
            result["per_second"] * (2 + shape.events_per_input), 1)
    finally:
        await loop.stop(meter)
        await reader.stop()
        result["cpu"] = meter.report()
    return result

"""Recovery: kill -9 the router under steady load, restart it, time until routing resumes.

Times count from the moment the killed process has been reaped. Load: new start requests at
`recovery_rate`/s (each routed into one step command). Per repetition: kill -9, start a new
router process at once, then
- `resume_s`: kill → CreateTime of the first command written after the kill (only the new
  process can write it),
- `healthy_s`: kill → the new process answers /healthz,
- `caught_up_s`: kill → every start sent until the first new command has its command (the
  backlog is drained); None when that takes over 120 s. The load rate must stay below the
  router's capacity or the backlog never drains (`recovery_rate` in bench/context.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from bench import workload
from bench.context import Context
from bench.kafka_io import Seen, TopicReader
from bench.machine import CpuMeter
from bench.pacing import paced_send
from bench.stack import Routers, bench_settings, prepare
from bench.stats import percentiles

STEADY_S = 4.0  # of load before each kill


async def run(ctx: Context) -> dict[str, Any]:
    rate, reps = ctx.sizes.recovery_rate, ctx.sizes.recovery_reps
    settings = bench_settings(ctx, "k")
    await prepare(settings)
    meter = CpuMeter()
    meter.track(ctx.broker_pid, "broker")
    routers = Routers.of(settings, meter)
    killed_ms = [float("inf")]
    resumed: list[float] = []
    resumed_event = asyncio.Event()

    def on_record(seen: Seen) -> None:
        if seen.create_ms > killed_ms[0] and not resumed:
            resumed.append(seen.create_ms / 1000.0)
            resumed_event.set()

    reader = await TopicReader(ctx.bootstrap, settings.commands_topic, keep=False,
                                 fetch_max_wait_ms=settings.fetch_max_wait_ms,
                               on_record=on_record).start()
    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, linger_ms=5, acks="all")
    tag = settings.topic_prefix.rstrip(".")
    stop = asyncio.Event()
    sent = [0]
    result: dict[str, Any] = {"rate": rate, "repetitions": []}
    load: asyncio.Task[int] | None = None
    try:
        await routers.start(1)
        await producer.start()
        starts = (workload.start_record(workload.instance_id(tag, n)) for n in range(10**7))

        def count(_record: workload.Record, _t: float) -> None:
            sent[0] += 1

        load = asyncio.create_task(paced_send(producer, settings.requests_topic, starts, rate,
                                              on_sent=count, stop=stop))
        for rep in range(reps):
            await asyncio.sleep(STEADY_S)
            killed_ms[0] = float("inf")  # nothing counts as resumed until the kill is done
            await routers.kill()
            # Taken once the old process is reaped: a command stamped after this is the new one's.
            killed = time.time()
            resumed.clear()
            resumed_event.clear()
            killed_ms[0] = killed * 1000
            ctx.say(f"recovery: killed the router (rep {rep + 1}/{reps}); restarting")
            await routers.restart()
            healthy = time.time() - killed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(resumed_event.wait(), 120)
            caught_up = await reader.wait_for(sent[0], within=120)
            rep_result = {"healthy_s": round(healthy, 2),
                          "resume_s": round(resumed[0] - killed, 2) if resumed else None,
                          "caught_up_s": round(time.time() - killed, 2) if caught_up else None}
            ctx.say(f"recovery: {rep_result}")
            result["repetitions"].append(rep_result)
        for name in ("healthy_s", "resume_s", "caught_up_s"):
            values = [r[name] for r in result["repetitions"] if r[name] is not None]
            result[name] = percentiles(values)
    finally:
        stop.set()
        if load is not None:
            await asyncio.gather(load, return_exceptions=True)
        await producer.stop()
        await routers.stop()
        await reader.stop()
        result["cpu"] = meter.report()
    return result

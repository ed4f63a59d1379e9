"""Memory: router RSS with N active instances in its table, extrapolated to 1M (linear).

RSS (/proc/PID/status VmRSS) is read once the router is idle and healthy, then again after N
start requests are routed; (after − before) / N is the cost per instance. "Per 1M" is that
cost × 1,000,000 + the idle RSS: an extrapolation from N, not a measurement at 1M. The
changelog's bytes on the broker's disk (Apache Kafka only) are reported per instance too.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from bench import workload
from bench.context import Context
from bench.disk import changelog_figures
from bench.kafka_io import TopicReader, produce_all
from bench.machine import CpuMeter
from bench.stack import Routers, bench_settings, prepare

SETTLE_S = 3.0


async def run(ctx: Context) -> dict[str, Any]:
    n = ctx.sizes.memory_instances
    settings = bench_settings(ctx.bootstrap, ctx.work_dir, ctx.sizes.partitions, "m")
    await prepare(settings)
    meter = CpuMeter()
    meter.track(ctx.broker_pid)
    routers = Routers.of(settings, meter)
    reader = await TopicReader(ctx.bootstrap, settings.commands_topic, keep=False).start()
    result: dict[str, Any] = {"instances": n}
    try:
        await routers.start(1)
        await asyncio.sleep(SETTLE_S)
        before = routers.rss_mb()
        tag = settings.topic_prefix.rstrip(".")
        records = workload.starts(tag, n)
        gc.collect()
        await produce_all(ctx.bootstrap, settings.requests_topic, records)
        ctx.say(f"memory: routing {n} starts")
        say = ctx.every(5.0)
        if not await reader.wait_for(n, within=60 + n / 50,
                                     progress=lambda c: say(f"memory: {c}/{n}")):
            raise RuntimeError(f"only {len(reader.distinct)}/{n} start commands arrived")
        await asyncio.sleep(SETTLE_S)
        after = routers.rss_mb()
        per_instance_kb = (after - before) * 1024 / n
        result.update({
            "rss_idle_mb": round(before, 1),
            "rss_with_instances_mb": round(after, 1),
            "rss_kb_per_instance": round(per_instance_kb, 2),
            "rss_mb_per_1m_instances": round(before + per_instance_kb * 1_000_000 / 1024, 0),
            "extrapolated_from": n,
        })
        result.update(changelog_figures(ctx.broker_data_dir, settings.router_app_id, n))
    finally:
        await routers.stop()
        await reader.stop()
        result["cpu"] = meter.report()
    return result

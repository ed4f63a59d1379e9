"""Memory: router RSS as its table fills with active instances: 1M in a full run.

RSS (/proc/PID/status VmRSS) is read once the router is idle and healthy, then after each
of four equal steps of start requests has been routed (N/4, N/2, 3N/4, N instances). A store
whose cost grows with N (the memory store: a dict per instance) shows it in every step; one
that fills bounded buffers first (RocksDB's memtables and block cache) shows it only in the
first steps. So the cost per instance is the **marginal** one, over the last half
((RSS(N) − RSS(N/2)) / (N/2)), and "per 1M" is RSS(N) + that × (1M − N): at the full size
(N = 1M) the measurement itself, below it an extrapolation, which from 100k was mostly noise
(75-343 MB over twelve runs against 227 MB measured). The average from idle is reported
too, and every step's RSS (`curve`). The changelog's bytes on the broker's disk (Apache
Kafka only) are reported per instance.
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
STEPS = 4


async def run(ctx: Context) -> dict[str, Any]:
    n = ctx.sizes.memory_instances
    settings = bench_settings(ctx, "m")
    await prepare(settings)
    meter = CpuMeter()
    meter.track(ctx.broker_pid, "broker")
    routers = Routers.of(settings, meter)
    reader = await TopicReader(ctx.bootstrap, settings.commands_topic, keep=False,
                               fetch_max_wait_ms=settings.fetch_max_wait_ms).start()
    result: dict[str, Any] = {"instances": n}
    try:
        await routers.start(1)
        await asyncio.sleep(SETTLE_S)
        before = routers.rss_mb()
        tag = settings.topic_prefix.rstrip(".")
        curve: list[tuple[int, float]] = [(0, round(before, 1))]
        say = ctx.every(5.0)
        for step in range(1, STEPS + 1):
            lo, hi = n * (step - 1) // STEPS, n * step // STEPS
            records = [workload.start_record(workload.instance_id(tag, i))
                       for i in range(lo, hi)]
            gc.collect()
            await produce_all(ctx.bootstrap, settings.requests_topic, records)
            del records
            ctx.say(f"memory: routing starts {lo}..{hi - 1}")
            if not await reader.wait_for(hi, within=60 + (hi - lo) / 50,
                                         progress=lambda c: say(f"memory: {c}/{n}")):
                raise RuntimeError(f"only {len(reader.distinct)}/{hi} start commands arrived")
            await asyncio.sleep(SETTLE_S)
            curve.append((hi, round(routers.rss_mb(), 1)))
        after = curve[-1][1]
        half_n, half_rss = curve[STEPS // 2]
        marginal_kb = (after - half_rss) * 1024 / (n - half_n)
        result.update({
            "rss_idle_mb": round(before, 1),
            "rss_with_instances_mb": after,
            "curve": curve,
            "rss_kb_per_instance_average": round((after - before) * 1024 / n, 2),
            "rss_kb_per_instance": round(marginal_kb, 2),
            "rss_mb_per_1m_instances": round(after + marginal_kb * (1_000_000 - n) / 1024, 0),
            "extrapolated_from": n,
        })
        result.update(changelog_figures(ctx.broker_data_dir, settings.router_app_id, n))
    finally:
        await routers.stop()
        await reader.stop()
        result["cpu"] = meter.report()
    return result

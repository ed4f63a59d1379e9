"""Routed completions per second at steady state: one router draining a pre-loaded backlog.

1. N start requests are pre-loaded; the router starts and routes them (start rate).
2. The router is stopped cleanly, N × len(PATH) completions are pre-loaded, the router is
   started again and drains them; every completion yields exactly one step command. The rate
   is commands / (last − first command CreateTime): the router alone, not the loader.
The visit table holds N instances throughout, and the definitions view is in use.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from bench import workload
from bench.context import Context
from bench.disk import changelog_figures
from bench.kafka_io import TopicReader, produce_all, rate_between
from bench.machine import CpuMeter, cpu_seconds
from bench.profiler import Profile
from bench.stack import Routers, bench_settings, prepare


async def run(ctx: Context, workers: int = 1, restart: bool = True) -> dict[str, Any]:
    """With `restart=False` the routers keep running: once the group is stable (every worker
    a member, no rebalance under way) the completions are produced to them, so a worker
    joining or a rebalance is not part of the rate (the `scaling` scenario)."""
    n, steps = ctx.sizes.instances, len(workload.PATH)
    settings = bench_settings(ctx, "t")
    await prepare(settings)
    meter = CpuMeter()
    meter.track(ctx.broker_pid, "broker")
    routers = Routers.of(settings, meter)
    reader = await TopicReader(ctx.bootstrap, settings.commands_topic,
                               fetch_max_wait_ms=settings.fetch_max_wait_ms).start()
    tag = settings.topic_prefix.rstrip(".")
    result: dict[str, Any] = {"instances": n, "completions": n * steps, "workers": workers,
                              "partitions": ctx.sizes.partitions}
    try:
        ctx.say(f"throughput: encoding {n} starts + {n * steps} completions")
        starts, completions = workload.starts(tag, n), workload.completions(tag, n)
        result["completion_record_bytes"] = completions[0].size
        await produce_all(ctx.bootstrap, settings.requests_topic, starts)
        result["router_start_s"] = round(await routers.start(workers), 2)
        ctx.say(f"throughput: router up in {result['router_start_s']}s; routing {n} starts")
        if not await reader.wait_for(n, within=60 + n / 50):
            raise RuntimeError(f"only {len(reader.distinct)}/{n} start commands arrived")
        result["starts"] = rate_between(reader.seen[:n])
        if restart:
            await routers.stop()
            result["preload_s"] = round(await produce_all(
                ctx.bootstrap, settings.completions_topic, completions), 2)
            ctx.say(f"throughput: {len(completions)} completions pre-loaded in "
                    f"{result['preload_s']}s; restarting the router")
            restarted = time.time()
            result["router_restart_s"] = round(await routers.start(workers), 2)
            cpu0, broker0 = routers.cpu_seconds(), cpu_seconds(ctx.broker_pid)
        else:
            result["group_stable_s"] = round(
                await wait_stable(ctx.bootstrap, settings.router_app_id, workers), 2)
            ctx.say(f"throughput: group stable with {workers} member(s); producing "
                    f"{len(completions)} completions to the running router(s)")
            restarted = time.time()
            cpu0, broker0 = routers.cpu_seconds(), cpu_seconds(ctx.broker_pid)
            result["preload_s"] = round(await produce_all(
                ctx.bootstrap, settings.completions_topic, completions), 2)
        profile = None
        if ctx.profile_dir is not None and workers == 1:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            profile = Profile(routers.pids[0], ctx.profile_dir / f"pyspy-{stamp}.collapsed")
        want = n + n * steps
        say = ctx.every(2.0)
        ok = await reader.wait_for(want, within=60 + n * steps / 100,
                                   progress=lambda c: say(f"throughput: {c}/{want} commands"))
        cpu = routers.cpu_seconds() - cpu0
        broker_cpu = cpu_seconds(ctx.broker_pid) - broker0
        if profile is not None:
            result["profile"] = profile.stop()
        if not ok:
            raise RuntimeError(f"only {len(reader.distinct)}/{want} commands arrived")
        drained = [s for s in reader.seen[n:]]
        result["completions_phase"] = rate_between(drained)
        result["per_second"] = result["completions_phase"]["per_second"]
        first = min(s.create_ms for s in drained) / 1000.0
        result["first_command_after_restart_s"] = round(first - restarted, 2)
        result["router_cpu_ms_per_completion"] = round(1000 * cpu / (n * steps), 3)
        if ctx.broker_pid:  # the broker's share of the same completions (it serves 5 records each)
            result["broker_cpu_ms_per_completion"] = round(1000 * broker_cpu / (n * steps), 3)
        result["duplicates"] = reader.count - len(reader.distinct)
        result["router_rss_mb"] = round(routers.rss_mb(), 1)
        result.update(changelog_figures(ctx.broker_data_dir, settings.router_app_id, n))
    finally:
        await routers.stop()
        await reader.stop()
        result["cpu"] = meter.report()
    return result


async def wait_stable(bootstrap: str, group: str, members: int, within: float = 120) -> float:
    """Seconds until the consumer group is Stable with `members` members (raises after
    `within`)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < within:
            response = await admin.describe_consumer_groups([group])
            state = response[0].to_object()["groups"][0]
            if state["state"] == "Stable" and len(state["members"]) == members:
                return time.monotonic() - started
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    raise RuntimeError(f"group {group} not stable with {members} members after {within}s")

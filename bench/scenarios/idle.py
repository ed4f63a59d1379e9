"""What the whole stack costs doing nothing: each process's CPU while no work arrives.

The four services (definitions, tasks with its SQLite inbox, router, gateway) start as in
`inbox`, with one process version published and no instances. After `idle_settle` seconds
(joins, recovery, first passes) each process's CPU is measured over `idle_seconds`. What is
left is polling: consumers' empty fetches (`Settings.fetch_max_wait_ms`), the broker answering
them, and the tasks service's timer, lease, outbox and SLA passes. On a 2-core machine it is
CPU that every latency figure above competes with.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.context import Context
from bench.machine import CpuMeter
from bench.scenarios.inbox import SERVICES
from bench.stack import prepare, stack_settings
from services.devstack import Stack


async def run(ctx: Context) -> dict[str, Any]:
    settings = stack_settings(ctx, "d")
    await prepare(settings)
    stack = Stack(settings)
    try:
        await asyncio.to_thread(stack.start, SERVICES, 90)
        ctx.say(f"idle: stack up; settling {ctx.sizes.idle_settle:.0f}s, then measuring "
                f"{ctx.sizes.idle_seconds:.0f}s")
        await asyncio.sleep(ctx.sizes.idle_settle)  # a duration measured, not a wait for state
        meter = CpuMeter()
        meter.track(ctx.broker_pid, "broker")
        for service in SERVICES:
            meter.track(stack.procs[service].pid, service)
        await asyncio.sleep(ctx.sizes.idle_seconds)
        cpu = meter.report()
    finally:
        await asyncio.to_thread(stack.stop)
    by_process = {name: cores for name, cores in cpu["cores_by_process"].items()
                  if name != "bench"}
    return {"fetch_max_wait_ms": settings.fetch_max_wait_ms, "cores": by_process,
            "broker_cores": by_process.get("broker", 0.0),
            "stack_cores": round(sum(by_process.values()), 3), "cpu": cpu}

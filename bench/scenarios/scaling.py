"""Scaling: routed completions/s with one router worker, then with two, back to back.

The `throughput` scenario without its restart: the workers route the starts, the bench waits
until the consumer group is stable (both members, no rebalance under way), then produces the
completions to the running workers, so a worker joining is not part of the rate. Both workers
split the partitions of one group. On this 2-core machine they share the cores with each other
and with the broker: this shows what a second worker costs and buys here, not on its own
machine.
"""

from __future__ import annotations

from typing import Any

from bench.context import Context
from bench.scenarios import throughput


async def run(ctx: Context) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for workers in (1, 2):
        ctx.say(f"scaling: {workers} worker(s)")
        result[f"workers_{workers}"] = await throughput.run(ctx, workers=workers, restart=False)
    one, two = (result[f"workers_{w}"]["per_second"] for w in (1, 2))
    result["per_second_1"], result["per_second_2"] = one, two
    result["speedup"] = round(two / one, 2) if one else None
    cpu = [result[f"workers_{w}"]["cpu"] for w in (1, 2)]
    result["cpu"] = {**cpu[1], "under_load": any(c.get("under_load") for c in cpu),
                     "seconds": round(sum(c.get("seconds", 0) for c in cpu), 1)}
    return result

"""What a plant manager asks of the journey read model: yield, flow per step, the bottleneck.

- **First-pass yield**: of the instances that ended, the share that ended `completed` with
  every step entered exactly once (no rework loop, no retry, no escalation).
- **Per step**: visits, work in progress (entered, not exited, instance still running), the
  time spent in the step (exited − entered: mean, p50, p90) and the age of the work waiting
  there now.
- **Bottleneck**: steps ranked by the work waiting in them, WIP × mean time in step (Little's
  law: the queue that takes longest to drain); ties by WIP.

Computed in Python over the visit rows of the window (`since`, default everything), so the
same answer comes from SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.tasks.models import Instance, Visit

RUNNING = ("running", "on_hold")
ENDED = ("completed", "cancelled")


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def first_pass_yield(instances: list[tuple[str, str | None, dict[str, int]]]) -> dict[str, Any]:
    """`instances`: (status, terminal_status, visits) of each instance."""
    ended = [i for i in instances if i[0] in ENDED]
    first = [i for i in ended if i[1] == "completed" and all(n <= 1 for n in i[2].values())]
    reworked = [i for i in ended if any(n > 1 for n in i[2].values())]
    return {"ended": len(ended), "first_pass": len(first), "reworked": len(reworked),
            "ratio": round(len(first) / len(ended), 4) if ended else None}


def step_flow(visits: list[tuple[str, datetime, datetime | None, bool]],
              now: datetime) -> list[dict[str, Any]]:
    """`visits`: (step, entered_at, exited_at, instance_running) of each visit row."""
    spent: dict[str, list[float]] = defaultdict(list)
    waiting: dict[str, list[float]] = defaultdict(list)
    count: dict[str, int] = defaultdict(int)
    for step, entered, exited, running in visits:
        count[step] += 1
        if exited is not None:
            spent[step].append((exited - entered).total_seconds())
        elif running:
            waiting[step].append((now - entered).total_seconds())
    out = []
    for step in sorted(count):
        done = sorted(spent[step])
        mean = sum(done) / len(done) if done else 0.0
        wip = len(waiting[step])
        out.append({
            "step": step, "visits": count[step], "wip": wip,
            "mean_s": round(mean, 3), "p50_s": round(_percentile(done, 0.5), 3),
            "p90_s": round(_percentile(done, 0.9), 3),
            "oldest_waiting_s": round(max(waiting[step], default=0.0), 3),
            "queue_s": round(wip * mean, 3),
        })
    return out


async def flow(session: AsyncSession, now: datetime, process: str | None = None,
               since: datetime | None = None) -> dict[str, Any]:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    query = select(Instance.instance_id, Instance.status, Instance.terminal_status,
                   Instance.visits).where(Instance.started_at.is_not(None))
    if process:
        query = query.where(Instance.process_key == process)
    if since:
        query = query.where(Instance.started_at >= since)
    rows = (await session.execute(query)).all()
    status = {r.instance_id: r.status for r in rows}
    fpy = first_pass_yield([(r.status, r.terminal_status, r.visits or {}) for r in rows])
    visit_query = select(Visit.instance_id, Visit.step, Visit.entered_at, Visit.exited_at)
    if since:
        visit_query = visit_query.where(Visit.entered_at >= since)
    visit_rows = [v for v in (await session.execute(visit_query)).all()
                  if v.instance_id in status]
    steps = step_flow([(v.step, v.entered_at, v.exited_at, status[v.instance_id] in RUNNING)
                       for v in visit_rows], now)
    ranked = sorted((s for s in steps if s["wip"]), key=lambda s: (-s["queue_s"], -s["wip"]))
    return {"process": process, "since": since.isoformat() if since else None,
            "instances": len(rows), "first_pass_yield": fpy, "steps": steps,
            "bottlenecks": [s["step"] for s in ranked]}

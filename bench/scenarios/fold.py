"""The tasks service's fold alone: step commands and instance events into SQL, no broker.

The records the router writes for one completion are one step command (→ an inbox task and
its `created` event) and two instance events (the step completed, the next one entered: a
visit closed, a visit opened, the old task retired and announced). This scenario builds those
records for `fold_instances` instances walking the remanufacturing path and applies them in
batches of `fold_batch` (commands first, as the consumer does), one transaction per batch,
through the same `inbox.apply_commands` / `journey.apply_events` and `Transactions` the
consumer uses.

`records_per_second` counts commands and events; `completions_per_second` is the rate of
router completions the service can absorb (one command + two events each). SQLite in the
work dir; PostgreSQL too when `FLOWLINE_BENCH_POSTGRES_URL` names an (empty) database.
"""

from __future__ import annotations

import functools
import os
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from bench import workload
from bench.context import Context
from schemas.messages import InstanceEvent, InstanceEventKind, ProcessRef, StepCommand
from services.common import migrate
from services.common.db import Transactions, make_engine
from services.tasks import inbox, journey, rows
from services.tasks.config import AutomationSettings

K = InstanceEventKind


def _round(iids: list[str], n: int, process: ProcessRef) -> tuple[list[Any], list[Any]]:
    """Round `n`'s records per instance: commands (enter step n) and events (leave n-1)."""
    steps = [*(step for step, _ in workload.PATH), "ship"]
    at = datetime.now(UTC).isoformat()
    step = steps[n]
    visits = {s: 1 for s in steps[: n + 1]}
    commands, events = [], []
    for iid in iids:
        if n == 0:
            events.append(InstanceEvent(kind=K.STARTED, instance_id=iid, process=process,
                                        at=at, status="running"))
        else:
            events.append(InstanceEvent(kind=K.STEP_COMPLETED, instance_id=iid,
                                        process=process, at=at, step=steps[n - 1], visit=1,
                                        outcome="done", operator="op-1"))
        events.append(InstanceEvent(kind=K.STEP_ENTERED, instance_id=iid, process=process,
                                    at=at, step=step, step_type="task", visit=1,
                                    visits=visits))
        commands.append(StepCommand(
            command_id=f"{iid}/{step}/1", instance_id=iid, tenant="default", process=process,
            step=step, step_type="task", visit=1, visits=visits, role="technician",
            reason="started" if n == 0 else "done", entered_at=at, due_at=at,
            instructions="Do the step.", priority="medium"))
    return commands, events


def _apply(settings: AutomationSettings, commands: list[Any], events: list[Any],
           session: Session) -> None:
    now = datetime.now(UTC)
    with rows.one_flush(session):  # as the consumer's fold
        inbox.apply_commands(session, commands, now, settings)
        journey.apply_events(session, events, now)


async def _fold(url: str, ctx: Context, m: int, batch: int, rounds: int) -> dict[str, Any]:
    await migrate.upgrade(url, "tasks")
    engine = make_engine(url)
    transactions = Transactions(engine)  # the consumer's
    settings = AutomationSettings()  # read once, as the service does
    process = ProcessRef(key="bench-reman", version=1)
    iids = [f"fold-{n:06d}" for n in range(m)]
    tick = ctx.every(5)
    busy = 0.0
    records = completions = 0
    batch_ms: list[float] = []
    try:
        for n in range(rounds):
            commands, events = _round(iids, n, process)
            for start in range(0, m, batch):
                cmds, evs = commands[start:start + batch], events[2 * start:2 * (start + batch)]
                began = time.perf_counter()
                await transactions.run(functools.partial(_apply, settings, cmds, evs))
                took = time.perf_counter() - began
                busy += took
                batch_ms.append(took * 1000)
                records += len(cmds) + len(evs)
                completions += len(cmds)
                tick(f"fold: {records} records, {records / busy:.0f}/s")
    finally:
        await transactions.close()
        await engine.dispose()
    batch_ms.sort()
    return {
        "instances": m, "batch": batch, "rounds": rounds, "records": records,
        "seconds": round(busy, 2),
        "records_per_second": round(records / busy, 1),
        "completions_per_second": round(completions / busy, 1),
        "batch_ms_p50": round(batch_ms[len(batch_ms) // 2], 1),
        "batch_ms_max": round(batch_ms[-1], 1),
    }


async def run(ctx: Context) -> dict[str, Any]:
    m, batch = ctx.sizes.fold_instances, ctx.sizes.fold_batch
    rounds = len(workload.PATH)
    db = ctx.work_dir / "fold-tasks.db"
    db.unlink(missing_ok=True)
    result: dict[str, Any] = {"sqlite": await _fold(f"sqlite+aiosqlite:///{db}", ctx, m, batch,
                                                    rounds)}
    postgres = os.environ.get("FLOWLINE_BENCH_POSTGRES_URL")
    if postgres:
        result["postgres"] = await _fold(postgres, ctx, m, batch, rounds)
    return result

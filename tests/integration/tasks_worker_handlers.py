"""Handlers the worker tests register (`flowline worker --module` imports this module)."""

from __future__ import annotations

import threading
from typing import Any

from services.workers.registry import InvalidInput, JobContext, Result, StepLog, handler

_never = threading.Event()


@handler("slow_once")
def slow_once(ctx: JobContext, log: StepLog) -> Result:
    """Hangs on its first attempt (until the worker is killed), finishes on the next."""
    log.log_step(f"attempt {ctx.attempt} on {ctx.subject}", entity_tag=str(ctx.step),
                 entity_type="Step")
    if ctx.attempt == 1:
        log.update_progress(0.5, "half way, then stuck")
        _never.wait(120)  # the work that never ends: the test kills this worker meanwhile
    log.update_progress(1.0, "done")
    return Result({"attempt": ctx.attempt, "lot": ctx.context.get("lot")}, outcome="pass",
                  stats={"itemsProcessed": 1})


@handler("flaky")
def flaky(ctx: JobContext, log: StepLog) -> dict[str, Any]:
    """Fails its first attempt with an ordinary (retryable) error."""
    if ctx.attempt == 1:
        raise RuntimeError("the sensor gateway timed out")
    return {"attempt": ctx.attempt}


@handler("broken")
def broken(ctx: JobContext, log: StepLog) -> dict[str, Any]:
    raise RuntimeError(f"still broken on attempt {ctx.attempt}")


@handler("refuses")
def refuses(ctx: JobContext, log: StepLog) -> dict[str, Any]:
    raise InvalidInput("lot L0 has no readings")

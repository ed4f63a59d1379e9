"""Timers and jobs in SQL: created from step commands, fired, finished, given up, retired.

Each function works in the caller's transaction. What the router must hear (a step completion,
a hold) goes to the message outbox in that same transaction, with a deterministic event id, so
a crash can neither lose it nor send it twice under different ids.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from schemas.messages import (
    ControlInstance,
    InstanceAction,
    StepCommand,
    StepCompletion,
    TaskEventKind,
)
from schemas.topics import COMPLETED_V1, HOLD_V1, INSTANCE_REQUESTS, STEP_COMPLETIONS
from services.tasks import metrics, outbox, rows
from services.tasks.actions import (
    HANDLER,
    TIMER,
    InvalidAction,
    job_input,
    parse_action,
    wake_at,
)
from services.tasks.config import AutomationSettings
from services.tasks.models import (
    ACTIVE,
    COMPLETED,
    FAILED,
    FIRED,
    PENDING,
    QUEUED,
    Instance,
    Job,
    MessageOutbox,
    Task,
    Timer,
)
from services.tasks.timeutil import iso

OPERATOR = "flowline-tasks"  # who the service says it is when it holds an instance
ON_HOLD = "on_hold"


def held_instances() -> Any:
    """Instances the read model knows are on hold: their timers and jobs wait for a resume
    (a completion now would be rejected by the router and lost)."""
    return select(Instance.instance_id).where(Instance.status == ON_HOLD)


def enqueue(session: Session, topic_suffix: str, ce_type: str, key: str,
            payload: dict[str, Any], event_id: str, at: datetime) -> bool:
    """Add a message for the router to the outbox; False when that event id is already there."""
    if session.scalar(select(MessageOutbox.id).where(MessageOutbox.event_id == event_id)):
        return False
    session.add(MessageOutbox(event_id=event_id, topic=topic_suffix, ce_type=ce_type, key=key,
                              payload=payload, created_at=at))
    rows.wrote(session, MessageOutbox.__tablename__)
    return True


# --- from step commands ---------------------------------------------------------------------


def schedule(session: Session, cmd: StepCommand, task: Any,
             settings: AutomationSettings, now: datetime) -> Timer | Job | None:
    """The timer or job behind a new machine-run task (`task.executor` is set; a `Task` or a
    task row), for the caller to add; a command the automation cannot run marks the task's
    incident and holds the instance instead."""
    if task.executor == TIMER:
        try:
            wake = wake_at(cmd)
        except ValueError as exc:
            task.incident, task.incident_at = str(exc)[:4000], now
            hold(session, task.instance_id, task.step, str(exc), now,
                 event_id=f"hold:{task.task_id}/timer")
            return None
        return Timer(timer_id=task.task_id, instance_id=task.instance_id, step=task.step,
                     visit=task.visit, wake_at=wake, status=PENDING, created_at=now)
    error: str | None = None
    try:
        action = parse_action(cmd.action)
    except InvalidAction as exc:
        action, error = None, f"invalid action: {exc}"
    kind = action.kind if action else str(task.executor)
    default_attempts = settings.job_max_attempts if kind == HANDLER else settings.http_max_attempts
    job = Job(
        job_id=task.task_id, instance_id=task.instance_id, tenant=task.tenant, step=task.step,
        visit=task.visit, kind=kind, handler=action.handler if action else None,
        action=dict(cmd.action or {}), input=job_input(cmd, action), status=QUEUED, attempts=0,
        max_attempts=(action.max_attempts if action else None) or default_attempts,
        available_at=task.created_at, created_at=now,
    )
    if error is not None:
        job.status, job.error, job.finished_at = FAILED, error, now
        task.incident, task.incident_at = error[:4000], now
        hold(session, task.instance_id, task.step, error, now,
             event_id=f"hold:{task.task_id}/invalid")
    return job


# --- outcomes -------------------------------------------------------------------------------


async def complete_step(session: AsyncSession, task_id: str, completion: StepCompletion,
                        event_id: str, at: datetime) -> None:
    """Owe the router `completion` and close the task (announcing it, as the inbox does)."""
    await session.run_sync(enqueue, STEP_COMPLETIONS.suffix, COMPLETED_V1,
                           completion.instance_id, completion.dump(), event_id, at)
    operator = completion.operator or completion.equipment
    result = await session.execute(
        update(Task).where(Task.task_id == task_id, Task.status.in_(ACTIVE))
        .values(status=COMPLETED, outcome=completion.outcome, completed_at=at, assignee=operator)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0):
        task = await session.get(Task, task_id, populate_existing=True)
        if task is not None:
            await outbox.record(session, task, TaskEventKind.COMPLETED, at, operator=operator,
                                outcome=completion.outcome)


async def raise_incident(session: AsyncSession, task_id: str, instance_id: str, step: str,
                         error: str, at: datetime, event_id: str) -> None:
    """The automation gave up: note the incident on the task and put the instance on hold
    with the error, for an operator to resolve (fix and retry the job, or complete the step)."""
    await session.execute(
        update(Task).where(Task.task_id == task_id)
        .values(incident=error[:4000], incident_at=at)
        .execution_options(synchronize_session=False)
    )
    await session.run_sync(hold, instance_id, step, error, at, event_id)


def hold(session: Session, instance_id: str, step: str, error: str, at: datetime,
         event_id: str) -> None:
    """Owe the router a hold of the instance because its step `step` failed with `error`."""
    request = ControlInstance(instance_id=instance_id, action=InstanceAction.HOLD,
                              reason=f"step {step} failed: {error}"[:2000], operator=OPERATOR)
    enqueue(session, INSTANCE_REQUESTS.suffix, HOLD_V1, instance_id, request.dump(), event_id, at)


# --- the scheduler's passes -----------------------------------------------------------------


async def fire_due_timers(sessions: async_sessionmaker[AsyncSession], now: datetime,
                          limit: int = 200) -> int:
    """Fire every pending timer due by `now` (not of a held instance); returns how many."""
    async with sessions() as s:
        due = list(await s.scalars(
            select(Timer.timer_id)
            .where(Timer.status == PENDING, Timer.wake_at <= now,
                   Timer.instance_id.not_in(held_instances()))
            .order_by(Timer.wake_at, Timer.timer_id).limit(limit)
        ))
    fired = 0
    for timer_id in due:
        async with sessions() as s, s.begin():
            # The conditional write comes first: exactly one pass (or process) fires a timer.
            won = await s.execute(
                update(Timer).where(Timer.timer_id == timer_id, Timer.status == PENDING)
                .values(status=FIRED, fired_at=now).execution_options(synchronize_session=False)
            )
            if not getattr(won, "rowcount", 0):
                continue
            timer = await s.get(Timer, timer_id, populate_existing=True)
            assert timer is not None
            completion = StepCompletion(
                instance_id=timer.instance_id, step=timer.step, visit=timer.visit,
                outcome="fired", equipment="timer", note=f"timer due {iso(timer.wake_at)}",
            )
            await complete_step(s, timer_id, completion, f"timer:{timer_id}", now)
            fired += 1
    metrics.TIMERS_FIRED.inc(fired)
    return fired


"""Step commands into inbox tasks: idempotent on the command id, superseded work retired.

A command and the instance events travel on different topics, so either may arrive first
(e.g. on a replay). Each side therefore checks the other: an event retires tasks it makes
dead, and a command for work the read model already knows is over lands retired.

Timer and automated commands become tasks too (so an instance's work is listed in one place),
marked with their `executor`; the timer or job that does the work is created with the task
(`services.tasks.automation`) and retired with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.messages import StepCommand, TaskEventKind
from services.tasks import actions, automation, outbox
from services.tasks.calendar import BusinessCalendar
from services.tasks.config import AutomationSettings
from services.tasks.models import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    OPEN,
    Calendar,
    Instance,
    Task,
    Visit,
)
from services.tasks.timeutil import parse_time

# Step types that wait for someone (or something the tasks service runs) to do the work.
INBOX_STEP_TYPES = frozenset({"task", "decision", "rework", "automated", "timer"})
ENDED = frozenset({"completed", "cancelled"})


def task_from_command(cmd: StepCommand, now: datetime) -> Task:
    """The inbox row for a command (not yet added to a session)."""
    extra = cmd.model_extra or {}
    station = extra.get("station")
    return Task(
        task_id=cmd.command_id,
        command_id=cmd.command_id,
        instance_id=cmd.instance_id,
        tenant=cmd.tenant,
        process_key=cmd.process.key,
        process_version=cmd.process.version,
        step=cmd.step,
        step_name=cmd.step_name,
        step_type=cmd.step_type,
        visit=cmd.visit,
        visits=dict(cmd.visits),
        role=cmd.role,
        station=str(station) if station is not None else None,
        escalate_to=cmd.escalate_to,
        revisit_assignment=cmd.revisit_assignment,
        revisit_role=cmd.revisit_role,
        previous_operators=list(cmd.previous_operators),
        instructions=cmd.instructions,
        decision_type=cmd.decision_type,
        outcomes=list(cmd.outcomes),
        priority=cmd.priority,
        subject=cmd.subject.dump() if cmd.subject else None,
        work_order=cmd.work_order,
        reason=cmd.reason,
        due_at=parse_time(cmd.due_at),
        status=OPEN,
        created_at=parse_time(cmd.entered_at) or now,
        executor=actions.executor(cmd),
    )


async def apply_commands(session: AsyncSession, commands: Sequence[StepCommand],
                         now: datetime, automation_settings: AutomationSettings | None = None,
                         ) -> int:
    """Insert a task per new inbox command (and its timer or job); returns how many were
    created (duplicates: 0)."""
    settings = automation_settings or AutomationSettings()
    calendars: dict[str, BusinessCalendar | None] = {}
    created = 0
    for cmd in commands:
        if cmd.step_type not in INBOX_STEP_TYPES:
            continue
        if await session.get(Task, cmd.command_id) is not None:
            continue  # a redelivery: the unique command id makes it a no-op
        task = task_from_command(cmd, now)
        if task.due_at is not None:
            calendar = await _calendar(session, cmd.tenant, calendars)
            if calendar is not None:  # the SLA counts working time only
                task.due_at = calendar.add(task.created_at, task.due_at - task.created_at)
        await _retire_if_dead(session, task)
        session.add(task)
        # Flush now so a duplicate later in the same batch finds this row.
        await session.flush()
        if task.status == OPEN:
            created += 1
            await outbox.record(session, task, TaskEventKind.CREATED, task.created_at)
            await cancel_active(session, now, "superseded by a later visit",
                                Task.instance_id == cmd.instance_id, Task.step == cmd.step,
                                Task.visit < cmd.visit)
            await automation.retire(session, cmd.instance_id, now, step=cmd.step,
                                    below_visit=cmd.visit)
            if task.executor:
                await automation.schedule(session, cmd, task, settings, now)
    return created


async def _calendar(session: AsyncSession, tenant: str,
                    seen: dict[str, BusinessCalendar | None]) -> BusinessCalendar | None:
    if tenant not in seen:
        row = await session.get(Calendar, tenant)
        seen[tenant] = BusinessCalendar.from_json(row.spec) if row is not None else None
    return seen[tenant]


async def _retire_if_dead(session: AsyncSession, task: Task) -> None:
    """Mark a new task retired when events already say its work is over or superseded."""
    instance = await session.get(Instance, task.instance_id)
    if instance is not None and instance.status in ENDED:
        task.status, task.completed_at = CANCELLED, instance.updated_at
        return
    newer = await session.scalar(
        select(Task.task_id).where(Task.instance_id == task.instance_id,
                                   Task.step == task.step, Task.visit > task.visit).limit(1)
    )
    if newer is not None:
        task.status, task.completed_at = CANCELLED, task.created_at
        return
    visit = await session.scalar(
        select(Visit).where(Visit.instance_id == task.instance_id, Visit.step == task.step,
                            Visit.visit == task.visit)
    )
    if visit is not None and visit.exited_at is not None:
        # Done elsewhere (equipment, another client) before the command got here.
        task.status, task.completed_at = COMPLETED, visit.exited_at
        task.outcome, task.assignee = visit.outcome, visit.operator


async def retire_step(session: AsyncSession, instance_id: str, step: str, visit: int | None,
                      at: datetime, outcome: str | None, operator: str | None) -> None:
    """A step was completed (maybe not through the inbox): its active tasks are done."""
    where = [Task.instance_id == instance_id, Task.step == step, Task.status.in_(ACTIVE)]
    if visit is not None:
        where.append(Task.visit <= visit)
    retired = list(await session.scalars(select(Task.task_id).where(*where)))
    await session.execute(update(Task).where(*where)
                          .values(status=COMPLETED, completed_at=at, outcome=outcome))
    await automation.retire(session, instance_id, at, step=step, up_to_visit=visit)
    if operator:
        await session.execute(
            update(Task)
            .where(Task.instance_id == instance_id, Task.step == step,
                   Task.status == COMPLETED, Task.assignee.is_(None))
            .values(assignee=operator)
        )
    for task_id in retired:  # the inbox may have announced it already: record() skips those
        task = await session.get(Task, task_id, populate_existing=True)
        if task is not None:
            await outbox.record(session, task, TaskEventKind.COMPLETED, at,
                                operator=task.assignee, outcome=outcome)


async def retire_instance(session: AsyncSession, instance_id: str, at: datetime) -> None:
    """The instance ended: nothing of it is left to do in any inbox, timer or job."""
    await cancel_active(session, at, "instance ended", Task.instance_id == instance_id)
    await automation.retire(session, instance_id, at)


async def cancel_active(session: AsyncSession, at: datetime, why: str,
                        *where: ColumnElement[bool], outcome: str | None = None) -> None:
    """Cancel the open and claimed tasks matching `where`, announcing each (`cancelled`)."""
    match = [*where, Task.status.in_(ACTIVE)]
    ids = list(await session.scalars(select(Task.task_id).where(*match)))
    if not ids:
        return
    await session.execute(update(Task).where(Task.task_id.in_(ids))
                          .values(status=CANCELLED, completed_at=at, outcome=outcome))
    for task_id in ids:
        task = await session.get(Task, task_id, populate_existing=True)
        if task is not None:
            await outbox.record(session, task, TaskEventKind.CANCELLED, at, outcome=why)

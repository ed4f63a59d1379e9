"""Step commands into inbox tasks: idempotent on the command id, superseded work retired.

A command and the instance events travel on different topics, so either may arrive first
(e.g. on a replay). Each side therefore checks the other: an event retires tasks it makes
dead, and a command for work the read model already knows is over lands retired.

Timer and automated commands become tasks too (so an instance's work is listed in one place),
marked with their `executor`; the timer or job that does the work is created with the task
(`services.tasks.automation`) and retired with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from schemas.messages import StepCommand, TaskEventKind
from services.tasks import actions, automation
from services.tasks.config import AutomationSettings
from services.tasks.models import ACTIVE, CANCELLED, COMPLETED, OPEN
from services.tasks.rows import TASKS, BatchRows, Row, as_row
from services.tasks.timeutil import parse_time

# Step types that wait for someone (or something the tasks service runs) to do the work.
INBOX_STEP_TYPES = frozenset({"task", "decision", "rework", "automated", "timer"})
ENDED = frozenset({"completed", "cancelled"})


def task_from_command(cmd: StepCommand, now: datetime) -> Row:
    """The inbox row for a command (not yet added)."""
    extra = cmd.model_extra or {}
    station = extra.get("station")
    return Row.new(
        TASKS,
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
        # `same`: a revisit is offered to the step's last operator first (`assignment`).
        assignee=(cmd.previous_operators[-1]
                  if cmd.revisit_assignment == "same" and cmd.previous_operators else None),
    )


def apply_commands(session: Session, commands: Sequence[StepCommand],
                   now: datetime, automation_settings: AutomationSettings | None = None,
                   ) -> int:
    """Insert a task per new inbox command (and its timer or job); returns how many were
    created (duplicates: 0)."""
    settings = automation_settings or AutomationSettings()
    commands = [cmd for cmd in commands if cmd.step_type in INBOX_STEP_TYPES]
    if not commands:
        return 0
    rows = BatchRows.of(session, {cmd.instance_id for cmd in commands},
                        {(cmd.instance_id, cmd.step) for cmd in commands})
    created = 0
    for cmd in commands:
        if cmd.command_id in rows.tasks:
            continue  # a redelivery: the unique command id makes it a no-op
        task = task_from_command(cmd, now)
        if task.due_at is not None:
            calendar = rows.calendar(cmd.tenant)
            if calendar is not None:  # the SLA counts working time only
                task.due_at = calendar.add(task.created_at, task.due_at - task.created_at)
        _retire_if_dead(rows, task)
        rows.add(task)
        if task.status != OPEN:
            continue
        created += 1
        rows.announce(task, TaskEventKind.CREATED, task.created_at)
        rows.cancel_active(cmd.instance_id, now, "superseded by a later visit",
                           _earlier_visits(cmd.step, cmd.visit))
        rows.retire_automation(cmd.instance_id, now, step=cmd.step, below_visit=cmd.visit)
        if task.executor:
            work = automation.schedule(session, cmd, task, settings, now)
            if work is not None:
                rows.add(as_row(work))
    rows.flush()
    return created


def _earlier_visits(step: str, visit: int) -> Callable[[Row], bool]:
    return lambda task: task.step == step and task.visit < visit


def _retire_if_dead(rows: BatchRows, task: Row) -> None:
    """Mark a new task retired when events already say its work is over or superseded."""
    instance = rows.instances.get(task.instance_id)
    if instance is not None and instance.status in ENDED:
        task.status, task.completed_at = CANCELLED, instance.updated_at
        return
    if any(t.step == task.step and t.visit > task.visit
           for t in rows.tasks_of(task.instance_id)):
        task.status, task.completed_at = CANCELLED, task.created_at
        return
    visit = rows.visit(task.instance_id, task.step, task.visit)
    if visit is not None and visit.exited_at is not None:
        # Done elsewhere (equipment, another client) before the command got here.
        task.status, task.completed_at = COMPLETED, visit.exited_at
        task.outcome, task.assignee = visit.outcome, visit.operator


def retire_step(rows: BatchRows, instance_id: str, step: str, visit: int | None,
                at: datetime, outcome: str | None, operator: str | None) -> None:
    """A step was completed (maybe not through the inbox): its active tasks are done."""
    retired = [t for t in rows.tasks_of(instance_id) if t.step == step
               and t.status in ACTIVE and (visit is None or t.visit <= visit)]
    for task in retired:
        task.status, task.completed_at, task.outcome = COMPLETED, at, outcome
        if task.assignee is None and operator:
            task.assignee = operator
    rows.retire_automation(instance_id, at, step=step, up_to_visit=visit)
    for task in retired:  # the inbox may have announced it already: announce() skips those
        rows.announce(task, TaskEventKind.COMPLETED, at, operator=task.assignee,
                      outcome=outcome)


def retire_instance(rows: BatchRows, instance_id: str, at: datetime) -> None:
    """The instance ended: nothing of it is left to do in any inbox, timer or job."""
    rows.cancel_active(instance_id, at, "instance ended")
    rows.retire_automation(instance_id, at)

"""The messages a decision sends: step commands, and requests that start, end or cancel children.

Every id here is derived from the instance, step and visit, never made up, so a replay after a
crash produces the same messages and their consumers dedupe them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import lru_cache
from typing import Any

from schemas.durations import parse_duration
from schemas.graph import Step
from schemas.messages import (
    ControlInstance,
    InstanceAction,
    ParentRef,
    ProcessRef,
    StartInstance,
    StepCommand,
    StepCompletion,
    Subject,
)
from services.router.routing.graph import Graph
from services.router.routing.state import InstanceState

MAX_INSTANCE_ID = 200  # StartInstance.instance_id's limit


def step_command(graph: Graph, s: InstanceState, step: Step, visit: int, reason: str,
                 now: datetime, wake_at: str | None = None) -> StepCommand:
    """Enter `step`: everything the task service, a worker or a machine needs to do it."""
    revisit_role = visit > 1 and step.revisit_assignment.value == "role" and step.revisit_role
    return StepCommand(
        command_id=f"{s.instance_id}/{step.id}/{visit}",
        instance_id=s.instance_id,
        tenant=s.tenant,
        process=process_ref(s.process_key, s.version),
        step=step.id,
        step_type=step.type.value,
        step_name=step.name,
        visit=visit,
        visits=dict(s.visits),
        role=step.revisit_role if revisit_role else step.role,
        escalate_to=step.escalate_to,
        revisit_assignment=step.revisit_assignment.value,
        revisit_role=step.revisit_role,
        previous_operators=[op for op in s.operators.get(step.id, []) if op],
        instructions=step.instructions,
        decision_type=step.decision_type.value if step.decision_type else None,
        outcomes=graph.outcomes(step),
        priority=s.priority,
        subject=subject_of(s),
        work_order=s.work_order,
        reason=reason,
        entered_at=now.isoformat(),
        due_at=due(graph, s, step, now),
        timer=step.timer,
        wake_at=wake_at,
        action=step.action,
        context=s.context,
    )


@lru_cache(maxsize=1024)
def process_ref(key: str, version: int) -> ProcessRef:
    """One per process version: messages are frozen, so every one naming it may share it (and
    a model in a field is not validated again, which is most of what building one costs)."""
    return ProcessRef(key=key, version=version)


def subject_of(s: InstanceState) -> Subject | None:
    """The instance's subject as a message field; the events and command of one decision, which
    all name it, share one."""
    if not s.subject:
        return None
    try:
        return _subject(tuple(s.subject.items()))
    except TypeError:  # an extra field with a list or object value: not hashable
        return Subject(**s.subject)


@lru_cache(maxsize=256)
def _subject(items: tuple[tuple[str, Any], ...]) -> Subject:
    return Subject(**dict(items))


def due(graph: Graph, s: InstanceState, step: Step, now: datetime) -> str | None:
    """SLA for the instance's priority × the step's weight (seed 001), when both exist."""
    slas = graph.version.slas
    sla = getattr(slas, s.priority, None) if slas else None
    if sla is None or step.weight is None:
        return None
    try:
        return (now + parse_duration(sla) * step.weight).isoformat()
    except ValueError:
        return None  # validation reports a bad SLA; routing does not stop for it


def child_id(parent: str, step: str, visit: int) -> str:
    """`parent/step/visit`; hashed down to fit when ids nest deeply."""
    full = f"{parent}/{step}/{visit}"
    if len(full) <= MAX_INSTANCE_ID:
        return full
    return f"{full[:MAX_INSTANCE_ID - 17]}~{hashlib.sha256(full.encode()).hexdigest()[:16]}"


def child_start(s: InstanceState, step: Step, visit: int) -> StartInstance:
    """Start the child instance a `subprocess` step runs: same tenant, subject and context.

    Without a pinned version the request names none, and the router starts the latest version
    approved at that moment (the core is pure: it cannot look that up itself).
    """
    assert step.subprocess is not None
    return StartInstance(
        instance_id=child_id(s.instance_id, step.id, visit),
        tenant=s.tenant,
        process=step.subprocess.process,
        version=step.subprocess.version,
        subject=Subject(**s.subject),
        work_order=s.work_order,
        priority=s.priority,  # type: ignore[arg-type]
        context=dict(s.context),
        parent=ParentRef(instance_id=s.instance_id, step=step.id, visit=visit),
    )


def parent_completion(parent: ParentRef, child: str, outcome: str) -> StepCompletion:
    """Complete the parent's subprocess step: the outcome is how the child ended."""
    return StepCompletion(instance_id=parent.instance_id, step=parent.step, visit=parent.visit,
                          outcome=outcome, note=f"subprocess {child} ended: {outcome}")


def child_cancel(s: InstanceState, step: str, visit: int, reason: str,
                 operator: str | None) -> ControlInstance:
    """Cancel the child a `subprocess` step's visit started: its id is derived, not stored.

    `parent` tells the child that the parent has ended, so it does not report back.
    """
    return ControlInstance(instance_id=child_id(s.instance_id, step, visit),
                           action=InstanceAction.CANCEL, reason=reason, operator=operator,
                           parent=ParentRef(instance_id=s.instance_id, step=step, visit=visit))

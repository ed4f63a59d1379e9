"""Rows to the JSON shapes of the HTTP API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.tasks.models import Instance, Task, Visit
from services.tasks.timeutil import iso


def task_view(task: Task) -> dict[str, Any]:
    """A task as the inbox shows it."""
    return {
        "task_id": task.task_id,
        "instance_id": task.instance_id,
        "tenant": task.tenant,
        "process": {"key": task.process_key, "version": task.process_version},
        "step": task.step,
        "step_name": task.step_name,
        "step_type": task.step_type,
        "visit": task.visit,
        "visits": task.visits,
        "role": task.role,
        "station": task.station,
        "escalate_to": task.escalate_to,
        "revisit_assignment": task.revisit_assignment,
        "revisit_role": task.revisit_role,
        "previous_operators": task.previous_operators,
        "instructions": task.instructions,
        "decision_type": task.decision_type,
        "outcomes": task.outcomes,
        "priority": task.priority,
        "subject": task.subject,
        "work_order": task.work_order,
        "reason": task.reason,
        "due_at": iso(task.due_at),
        "status": task.status,
        "assignee": task.assignee,
        "created_at": iso(task.created_at),
        "claimed_at": iso(task.claimed_at),
        "completed_at": iso(task.completed_at),
        "outcome": task.outcome,
        "breached_at": iso(task.breached_at),
        "original_role": task.original_role,
        "executor": task.executor,
        "incident": task.incident,
        "incident_at": iso(task.incident_at),
    }


def instance_view(row: Instance, journey: Sequence[Visit] | None = None) -> dict[str, Any]:
    """An instance; with its journey (visits in order of entry) when given."""
    view: dict[str, Any] = {
        "instance_id": row.instance_id,
        "tenant": row.tenant,
        "status": row.status,
        "terminal_status": row.terminal_status,
        "process": {"key": row.process_key, "version": row.process_version},
        "subject": row.subject,
        "work_order": row.work_order,
        "active_steps": row.active_steps,
        "visits": row.visits,
        "parallel": row.parallel,
        "reason": row.reason,
        "started_at": iso(row.started_at),
        "updated_at": iso(row.updated_at),
    }
    if journey is not None:
        view["journey"] = [
            {
                "step": v.step,
                "visit": v.visit,
                "reason": v.reason,
                "entered_at": iso(v.entered_at),
                "exited_at": iso(v.exited_at),
                "outcome": v.outcome,
                "operator": v.operator,
                "measurements": v.measurements,
            }
            for v in journey
        ]
    return view

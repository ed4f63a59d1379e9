"""Who may claim or complete a task: pure rules over a task row, raising the HTTP-mapped errors."""

from __future__ import annotations

from services.common.errors import Conflict, Invalid
from services.tasks.models import CLAIMED, OPEN, Task


def check_claimable(task: Task, operator: str) -> None:
    """Raise Conflict unless `operator` may hold `task` (already holding it is fine)."""
    if task.status not in (OPEN, CLAIMED):
        raise Conflict(f"task {task.task_id} is {task.status}", code="task_closed",
                       details={"status": task.status})
    if task.executor and not task.incident:
        # Machine work; a person steps in only when the automation gave up (an incident).
        raise Conflict(f"task {task.task_id} is run by the service ({task.executor}); see "
                       f"/v1/jobs or /v1/timers", code="task_automated",
                       details={"executor": task.executor})
    if task.status == CLAIMED and task.assignee != operator:
        raise Conflict(f"task {task.task_id} is claimed by {task.assignee}", code="task_claimed",
                       details={"assignee": task.assignee})
    check_revisit(task, operator)


def check_revisit(task: Task, operator: str) -> None:
    """The step's revisit policy (seed 000): `different` bars the step's earlier operators
    (rework is redone by fresh eyes); `same` offers the task to its last operator first: while
    it is offered (open, with them as assignee) nobody else may take it, and once they release
    it, anyone of the role may. `role` is the router's part: the command names the revisit
    role."""
    previous = task.previous_operators or []
    if task.revisit_assignment == "different" and operator in previous:
        raise Conflict(
            f"{operator} already worked on step {task.step}; revisits need a different operator",
            code="revisit_different_operator", details={"previous_operators": previous},
        )
    if task.revisit_assignment == "same" and task.status == OPEN \
            and task.assignee in previous and operator != task.assignee:
        raise Conflict(
            f"step {task.step} is offered to its earlier operator {task.assignee} first",
            code="revisit_same_operator",
            details={"offered_to": task.assignee, "previous_operators": previous},
        )


def check_outcome(task: Task, outcome: str | None) -> None:
    """Decision steps need an outcome, one of the step's outcomes when it lists them."""
    if task.step_type == "decision" and not outcome:
        raise Invalid(f"step {task.step} is a decision: an outcome is required",
                      code="outcome_required", details={"outcomes": task.outcomes})
    if outcome and task.outcomes and outcome not in task.outcomes:
        raise Invalid(f"outcome {outcome!r} is not one of {task.outcomes}",
                      code="unknown_outcome", details={"outcomes": task.outcomes})

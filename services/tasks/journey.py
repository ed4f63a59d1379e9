"""The journey read model: instance events folded into `instances` and `visits` rows.

Every fold is idempotent, so an at-least-once redelivery converges to the same rows: a visit
is keyed by (instance, step, visit), closing a closed visit changes nothing, and a redelivered
`started` never resets a later status.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.messages import InstanceEvent, InstanceEventKind
from services.tasks import inbox
from services.tasks.models import Instance, Task, Visit
from services.tasks.timeutil import parse_time

K = InstanceEventKind
# Start and terminal steps are markers: entered and left in the same moment.
PASS_THROUGH = frozenset({"start", "terminal"})
DEFAULT_STATUS = {K.STARTED: "running", K.HELD: "on_hold", K.RESUMED: "running",
                  K.CANCELLED: "cancelled", K.COMPLETED: "completed"}


async def apply_events(session: AsyncSession, events: Sequence[InstanceEvent],
                       now: datetime) -> None:
    """Fold events, in order, into the read model (and retire inbox tasks they make dead)."""
    for event in events:
        await apply_event(session, event, now)


async def apply_event(session: AsyncSession, ev: InstanceEvent, now: datetime) -> None:
    """Fold one event. `rejected` events change nothing: the instance stayed where it was."""
    if ev.kind == K.REJECTED:
        return
    at = parse_time(ev.at) or now
    row = await session.get(Instance, ev.instance_id)
    if row is None:
        # Later events can reach us before `started` only on a partial replay; keep them.
        row = Instance(instance_id=ev.instance_id, tenant=ev.tenant, status="running",
                       active_steps=[], visits={}, updated_at=at)
        session.add(row)
    if ev.kind == K.STARTED and row.started_at is None:
        row.started_at = at
        row.status = ev.status or "running"
    elif ev.kind in DEFAULT_STATUS and ev.kind != K.STARTED:
        row.status = ev.status or DEFAULT_STATUS[ev.kind]
    if ev.process is not None:
        row.process_key, row.process_version = ev.process.key, ev.process.version
    if ev.subject is not None:
        row.subject = ev.subject.dump()
    row.work_order = ev.work_order or row.work_order
    if ev.visits is not None:
        row.visits = dict(ev.visits)
    if ev.reason and ev.kind in (K.HELD, K.RESUMED, K.CANCELLED):
        row.reason = ev.reason
    row.updated_at = max(row.updated_at, at)

    if ev.kind == K.STEP_ENTERED and ev.step:
        await _enter(session, row, ev, at)
    elif ev.kind == K.STEP_COMPLETED and ev.step:
        await _complete(session, row, ev, at)
    elif ev.kind == K.MIGRATED and ev.active_steps is not None:
        await _migrated(session, row, ev.active_steps, at)
    elif ev.kind in (K.COMPLETED, K.CANCELLED):
        if ev.terminal_status:
            row.terminal_status = ev.terminal_status
        await _close_open_visits(session, row.instance_id, at)
        row.active_steps = []
        await inbox.retire_instance(session, row.instance_id, at)


async def _migrated(session: AsyncSession, row: Instance, active: list[str],
                    at: datetime) -> None:
    """A new version: open visits and inbox tasks of steps it no longer waits on are over."""
    row.active_steps = list(active)
    await session.execute(
        update(Visit).where(Visit.instance_id == row.instance_id, Visit.exited_at.is_(None),
                            Visit.step.not_in(active)).values(exited_at=at, outcome="migrated"))
    await inbox.cancel_active(session, at, "migrated", Task.instance_id == row.instance_id,
                              Task.step.not_in(active), outcome="migrated")


async def _enter(session: AsyncSession, row: Instance, ev: InstanceEvent, at: datetime) -> None:
    assert ev.step is not None
    if ev.visit is not None:
        visit_no = ev.visit
    elif ev.visits is not None:  # already copied into row.visits
        visit_no = ev.visits.get(ev.step, 1)
    else:
        visit_no = row.visits.get(ev.step, 0) + 1
    if ev.visits is None:
        row.visits = {**row.visits, ev.step: max(row.visits.get(ev.step, 0), visit_no)}
    if await _visit(session, row.instance_id, ev.step, visit_no) is not None:
        return  # redelivered
    first = await session.scalar(
        select(Visit.id).where(Visit.instance_id == row.instance_id).limit(1)
    )
    # The router enters the start step first; routers that say the step type are believed.
    step_type = ev.step_type
    marker = step_type in PASS_THROUGH or (step_type is None and first is None)
    session.add(Visit(instance_id=row.instance_id, step=ev.step, visit=visit_no,
                      reason=ev.reason, entered_at=at, exited_at=at if marker else None))
    await session.flush()
    if not marker and ev.step not in row.active_steps:
        row.active_steps = [*row.active_steps, ev.step]


async def _complete(session: AsyncSession, row: Instance, ev: InstanceEvent,
                    at: datetime) -> None:
    assert ev.step is not None
    query = select(Visit).where(Visit.instance_id == row.instance_id, Visit.step == ev.step)
    if ev.visit is not None:
        query = query.where(Visit.visit == ev.visit)
    visit = await session.scalar(query.order_by(Visit.visit.desc()).limit(1))
    if visit is not None and visit.exited_at is None:
        visit.exited_at, visit.outcome, visit.operator = at, ev.outcome, ev.operator
        visit.measurements = dict(ev.measurements) if ev.measurements else None
    row.active_steps = [s for s in row.active_steps if s != ev.step]
    await inbox.retire_step(session, row.instance_id, ev.step, ev.visit, at, ev.outcome,
                            ev.operator)


async def _visit(session: AsyncSession, instance_id: str, step: str, visit: int) -> Visit | None:
    return await session.scalar(
        select(Visit).where(Visit.instance_id == instance_id, Visit.step == step,
                            Visit.visit == visit)
    )


async def _close_open_visits(session: AsyncSession, instance_id: str, at: datetime) -> None:
    open_visits = await session.scalars(
        select(Visit).where(Visit.instance_id == instance_id, Visit.exited_at.is_(None))
    )
    for visit in open_visits:
        visit.exited_at = at

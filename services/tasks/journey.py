"""The journey read model: instance events folded into `instances` and `visits` rows.

Every fold is idempotent, so an at-least-once redelivery converges to the same rows: a visit
is keyed by (instance, step, visit), closing a closed visit changes nothing, and a redelivered
`started` never resets a later status.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from schemas.messages import InstanceEvent, InstanceEventKind
from services.tasks import inbox
from services.tasks.rows import INSTANCES, VISITS, BatchRows, Row
from services.tasks.timeutil import parse_time

K = InstanceEventKind
# Start and terminal steps are markers: entered and left in the same moment.
PASS_THROUGH = frozenset({"start", "terminal"})
DEFAULT_STATUS = {K.STARTED: "running", K.HELD: "on_hold", K.RESUMED: "running",
                  K.CANCELLED: "cancelled", K.COMPLETED: "completed"}


def apply_events(session: Session, events: Sequence[InstanceEvent],
                 now: datetime) -> None:
    """Fold events, in order, into the read model (and retire inbox tasks they make dead)."""
    events = [ev for ev in events if ev.kind != K.REJECTED]
    if not events:
        return  # `rejected` events change nothing: the instance stayed where it was
    rows = BatchRows.of(session, {ev.instance_id for ev in events},
                        {(ev.instance_id, ev.step) for ev in events
                         if ev.kind == K.STEP_ENTERED and ev.step})
    for event in events:
        apply_event(rows, event, now)
    rows.flush()


def apply_event(rows: BatchRows, ev: InstanceEvent, now: datetime) -> None:
    """Fold one event into the rows of its batch."""
    at = parse_time(ev.at) or now
    row = rows.instances.get(ev.instance_id)
    if row is None:
        # Later events can reach us before `started` only on a partial replay; keep them.
        row = Row.new(INSTANCES, instance_id=ev.instance_id, tenant=ev.tenant,
                      status="running", active_steps=[], visits={}, updated_at=at)
        rows.add(row)
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
    if ev.parallel is not None:  # the router's latest; empty once it left its last block
        row.parallel = ev.parallel.dump() if ev.parallel.lanes or ev.parallel.splits else None
    row.updated_at = max(row.updated_at, at)

    if ev.kind == K.STEP_ENTERED and ev.step:
        _enter(rows, row, ev, at)
    elif ev.kind == K.STEP_COMPLETED and ev.step:
        _complete(rows, row, ev, at)
    elif ev.kind == K.MIGRATED and ev.active_steps is not None:
        _migrated(rows, row, ev.active_steps, at)
    elif ev.kind in (K.COMPLETED, K.CANCELLED):
        if ev.terminal_status:
            row.terminal_status = ev.terminal_status
        for visit in rows.visits_of(row.instance_id):
            if visit.exited_at is None:
                visit.exited_at = at
        row.active_steps = []
        if row.parallel is not None:  # an ended instance is in no block, whatever came before
            row.parallel = None
        inbox.retire_instance(rows, row.instance_id, at)


def _migrated(rows: BatchRows, row: Row, active: list[str], at: datetime) -> None:
    """A new version: open visits and inbox tasks of steps it no longer waits on are over."""
    row.active_steps = list(active)
    for visit in rows.visits_of(row.instance_id):
        if visit.exited_at is None and visit.step not in active:
            visit.exited_at, visit.outcome = at, "migrated"
    rows.cancel_active(row.instance_id, at, "migrated", lambda t: t.step not in active,
                       outcome="migrated")


def _enter(rows: BatchRows, row: Row, ev: InstanceEvent, at: datetime) -> None:
    assert ev.step is not None
    if ev.visit is not None:
        visit_no = ev.visit
    elif ev.visits is not None:  # already copied into row.visits
        visit_no = ev.visits.get(ev.step, 1)
    else:
        visit_no = row.visits.get(ev.step, 0) + 1
    if ev.visits is None:
        row.visits = {**row.visits, ev.step: max(row.visits.get(ev.step, 0), visit_no)}
    if rows.visit(row.instance_id, ev.step, visit_no) is not None:
        return  # redelivered
    # The router enters the start step first; routers that say the step type are believed.
    step_type = ev.step_type
    marker = step_type in PASS_THROUGH or (step_type is None
                                           and not rows.has_visits(row.instance_id))
    rows.add(Row.new(VISITS, instance_id=row.instance_id, step=ev.step, visit=visit_no,
                     reason=ev.reason, entered_at=at, exited_at=at if marker else None,
                     outcome=None, operator=None, measurements=None))
    if not marker and ev.step not in row.active_steps:
        row.active_steps = [*row.active_steps, ev.step]


def _complete(rows: BatchRows, row: Row, ev: InstanceEvent, at: datetime) -> None:
    assert ev.step is not None
    visits = [v for v in rows.visits_of(row.instance_id) if v.step == ev.step
              and (ev.visit is None or v.visit == ev.visit)]
    visit = max(visits, key=lambda v: v.visit, default=None)
    if visit is not None and visit.exited_at is None:
        visit.exited_at, visit.outcome, visit.operator = at, ev.outcome, ev.operator
        visit.measurements = dict(ev.measurements) if ev.measurements else None
    row.active_steps = [s for s in row.active_steps if s != ev.step]
    inbox.retire_step(rows, row.instance_id, ev.step, ev.visit, at, ev.outcome, ev.operator)

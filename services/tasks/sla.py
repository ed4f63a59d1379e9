"""SLA breaches: a sweeper marks open or claimed tasks past their due time as breached and,
when their step names an `escalate_to` role, hands them to that role.

The time comes from the service's clock (never the machine's directly), so tests move it.
Each task is breached in a transaction of its own with a conditional UPDATE, so two sweepers
(or a sweep racing a claim or a completion) change a task once, and its events go to the
outbox in that same transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.messages import TaskEventKind
from services.tasks import metrics, outbox
from services.tasks.clock import Clock
from services.tasks.models import ACTIVE, OPEN, Task

log = logging.getLogger(__name__)


async def breach(session: AsyncSession, task_id: str, now: datetime) -> bool:
    """Breach one task if it is still active, due and not yet breached (in `session`'s
    transaction); escalate it when it has somewhere to go. True if it was breached."""
    marked = await session.execute(
        update(Task)
        .where(Task.task_id == task_id, Task.status.in_(ACTIVE), Task.breached_at.is_(None),
               Task.due_at.is_not(None), Task.due_at <= now)
        .values(breached_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(marked, "rowcount", 0):
        return False
    task = await session.get(Task, task_id, populate_existing=True)
    assert task is not None
    await outbox.record(session, task, TaskEventKind.BREACHED, now, operator=task.assignee)
    metrics.SLA_BREACHES.inc()
    if task.escalate_to and task.escalate_to != task.role:
        await session.execute(
            update(Task).where(Task.task_id == task_id)
            .values(original_role=func.coalesce(Task.original_role, Task.role),
                    role=task.escalate_to, status=OPEN, assignee=None, claimed_at=None)
            .execution_options(synchronize_session=False)
        )
        task = await session.get(Task, task_id, populate_existing=True)
        assert task is not None
        await outbox.record(session, task, TaskEventKind.ESCALATED, now)
        metrics.ESCALATIONS.inc()
    return True


def overdue(now: datetime, limit: int = 500) -> Select[str]:
    """The active tasks due by `now` and not yet breached, oldest due first: a range of the
    (status, breached_at, due_at) index, not a scan of every active task each second."""
    return (select(Task.task_id)
            .where(Task.status.in_(ACTIVE), Task.breached_at.is_(None),
                   Task.due_at.is_not(None), Task.due_at <= now)
            .order_by(Task.due_at, Task.task_id).limit(limit))


async def sweep(sessions: async_sessionmaker[AsyncSession], now: datetime,
                limit: int = 500) -> int:
    """Breach (and escalate) every task due by `now`; returns how many were breached."""
    async with sessions() as s:
        due = list(await s.scalars(overdue(now, limit)))
    breached = 0
    for task_id in due:
        async with sessions() as s, s.begin():
            breached += await breach(s, task_id, now)
    return breached


class SlaSweeper:
    """Sweep every `interval` seconds; `on_breach` runs after a sweep that breached something
    (the service kicks the outbox publisher with it)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock,
                 interval: float = 1.0, on_breach: Callable[[], None] = lambda: None) -> None:
        self.sessions, self.clock, self.interval = sessions, clock, interval
        self.on_breach = on_breach

    async def run(self) -> None:
        while True:
            try:
                if await sweep(self.sessions, self.clock.now()):
                    self.on_breach()
            except asyncio.CancelledError:
                raise
            except Exception:  # a locked or lost database: try again next round
                log.exception("SLA sweep failed")
            await asyncio.sleep(self.interval)

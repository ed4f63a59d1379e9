"""SQL reads and the atomic inbox writes behind the HTTP API.

Each write is a single conditional UPDATE in a transaction of its own: it is what makes a
claim race have exactly one winner, and on SQLite a transaction that starts with its write
waits for the lock (busy timeout) instead of failing on a stale read snapshot. A change that
happened writes its task event to the outbox in that same transaction (`services.tasks.outbox`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.messages import TaskEventKind
from services.common.errors import NotFound
from services.tasks import outbox
from services.tasks.models import ACTIVE, CLAIMED, COMPLETED, OPEN, Instance, Task, Visit

PRIORITY_RANK = case(
    {"urgent": 0, "high": 1, "medium": 2, "low": 3}, value=Task.priority, else_=4
)


@dataclass(frozen=True)
class TaskFilter:
    role: str | None = None
    station: str | None = None
    assignee: str | None = None
    status: str | None = None
    instance_id: str | None = None


class Store:
    """The tasks service's database, as the API needs it."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def list_tasks(self, f: TaskFilter, limit: int, offset: int) -> tuple[list[Task], int]:
        """An inbox page, most urgent and soonest due first, and the total count."""
        query = select(Task)
        if f.role:
            query = query.where(Task.role == f.role)
        if f.station:  # tasks without a station are done at their role's station
            query = query.where(or_(Task.station == f.station,
                                    and_(Task.station.is_(None), Task.role == f.station)))
        if f.assignee:
            query = query.where(Task.assignee == f.assignee)
        if f.status:
            query = query.where(Task.status.in_(f.status.split(",")))
        if f.instance_id:
            query = query.where(Task.instance_id == f.instance_id)
        async with self.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            rows = await session.scalars(
                query.order_by(PRIORITY_RANK, Task.due_at.is_(None), Task.due_at,
                               Task.created_at, Task.task_id).limit(limit).offset(offset)
            )
            return list(rows), int(total or 0)

    async def get_task(self, task_id: str) -> Task:
        async with self.sessions() as session:
            task = await session.get(Task, task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}", code="task_not_found")
        return task

    async def try_hold(self, task_id: str, operator: str, now: datetime) -> bool:
        """Atomically give an open task (or one `operator` holds already) to `operator`;
        a claim of an open task announces itself (task event `claimed`)."""
        claim = (
            update(Task)
            .where(Task.task_id == task_id, Task.status == OPEN)
            .values(status=CLAIMED, assignee=operator,
                    claimed_at=func.coalesce(Task.claimed_at, now))
        )
        async with self.sessions() as session, session.begin():
            if await self._execute(session, claim):
                await self._announce(session, task_id, TaskEventKind.CLAIMED, now,
                                     operator=operator)
                return True
            held = await session.scalar(
                select(Task.task_id).where(Task.task_id == task_id, Task.status == CLAIMED,
                                           Task.assignee == operator)
            )
            return held is not None

    async def try_release(self, task_id: str, operator: str, now: datetime) -> bool:
        stmt = (
            update(Task)
            .where(Task.task_id == task_id, Task.status == CLAIMED, Task.assignee == operator)
            .values(status=OPEN, assignee=None, claimed_at=None)
        )
        async with self.sessions() as session, session.begin():
            if not await self._execute(session, stmt):
                return False
            await self._announce(session, task_id, TaskEventKind.RELEASED, now, operator=operator)
            return True

    async def mark_completed(self, task_id: str, outcome: str | None, now: datetime,
                             operator: str | None = None) -> None:
        """Completed; a no-op when the instance events already said so (and announced it)."""
        stmt = (
            update(Task)
            .where(Task.task_id == task_id, Task.status.in_(ACTIVE))
            .values(status=COMPLETED, outcome=outcome, completed_at=now)
        )
        async with self.sessions() as session, session.begin():
            await self._execute(session, stmt)
            await self._announce(session, task_id, TaskEventKind.COMPLETED, now,
                                 operator=operator, outcome=outcome)

    @staticmethod
    async def _execute(session: AsyncSession, stmt: Any) -> bool:
        result = await session.execute(stmt.execution_options(synchronize_session=False))
        return bool(getattr(result, "rowcount", 0))

    @staticmethod
    async def _announce(session: AsyncSession, task_id: str, kind: TaskEventKind, at: datetime,
                        operator: str | None = None, outcome: str | None = None) -> None:
        """The task event for a change just made in `session`'s transaction (see outbox)."""
        task = await session.get(Task, task_id, populate_existing=True)
        if task is None or (kind == TaskEventKind.COMPLETED and task.status != COMPLETED):
            return
        await outbox.record(session, task, kind, at, operator=operator, outcome=outcome)

    async def get_instance(self, instance_id: str) -> tuple[Instance, list[Visit]]:
        async with self.sessions() as session:
            row = await session.get(Instance, instance_id)
            if row is None or row.started_at is None:
                raise NotFound(f"no instance {instance_id!r} (yet)", code="instance_not_found")
            visits = await session.scalars(
                select(Visit).where(Visit.instance_id == instance_id)
                .order_by(Visit.entered_at, Visit.id)
            )
            return row, list(visits)

    async def list_instances(self, status: str | None, process: str | None, limit: int,
                             offset: int, work_order: str | None = None,
                             ) -> tuple[list[Instance], int]:
        query = select(Instance).where(Instance.started_at.is_not(None))
        if status:
            query = query.where(Instance.status.in_(status.split(",")))
        if process:
            query = query.where(Instance.process_key == process)
        if work_order:
            query = query.where(Instance.work_order == work_order)
        async with self.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            rows = await session.scalars(
                query.order_by(Instance.updated_at.desc(), Instance.instance_id)
                .limit(limit).offset(offset)
            )
            return list(rows), int(total or 0)

    async def wip(self) -> dict[str, Any]:
        """Open work per step and role, and instances per status and terminal status."""
        async with self.sessions() as session:
            per_step = await session.execute(
                select(Task.step, Task.role, Task.status, func.count())
                .where(Task.status.in_(ACTIVE)).group_by(Task.step, Task.role, Task.status)
            )
            per_status = await session.execute(
                select(Instance.status, Instance.terminal_status, func.count())
                .where(Instance.started_at.is_not(None))
                .group_by(Instance.status, Instance.terminal_status)
            )
        steps: dict[str, dict[str, Any]] = {}
        roles: dict[str, dict[str, int]] = {}
        for step, role, status, n in per_step:
            entry = steps.setdefault(step, {"step": step, OPEN: 0, CLAIMED: 0, "total": 0})
            entry[status] += n
            entry["total"] += n
            by_role = roles.setdefault(role or "", {OPEN: 0, CLAIMED: 0})
            by_role[status] += n
        statuses: dict[str, int] = {}
        terminal: dict[str, int] = {}
        for status, terminal_status, n in per_status:
            statuses[status] = statuses.get(status, 0) + n
            if terminal_status:
                terminal[terminal_status] = terminal.get(terminal_status, 0) + n
        return {
            "steps": sorted(steps.values(), key=lambda e: e["step"]),
            "roles": [{"role": r or None, **c} for r, c in sorted(roles.items())],
            "instances": statuses,
            "terminal": terminal,
        }

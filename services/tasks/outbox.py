"""Task events (`flowline.task-events`) through an outbox: written with the change, sent later.

`record()` adds an outbox row in the caller's transaction, so a task change and its event
commit together; `OutboxPublisher` sends unsent rows oldest first from a background loop and
retries with backoff while the broker is away. Sending is at-least-once: a crash between the
send and the `sent_at` update re-sends a row, with the same CloudEvent id, which consumers
dedupe. Ids are deterministic per change (`<task>/<kind>`, or `<task>/<kind>/<n>` for changes
that can repeat), and `record()` skips an id it already holds, so a redelivered command or a
change seen by two paths (the inbox and the instance events) announces itself once.

The same publisher sends `message_outbox` (step completions and instance requests the timers
and automated steps owe the router): `route` says where a row goes and as what type.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from schemas.messages import TaskEvent, TaskEventKind
from schemas.topics import TASK_EVENT_V1
from services.common.db import Transactions
from services.common.kafka import EventProducer
from services.tasks import metrics
from services.tasks.clock import Clock
from services.tasks.models import MessageOutbox, Task, TaskOutbox
from services.tasks.timeutil import iso

log = logging.getLogger(__name__)

# Changes a task goes through at most once; the others are numbered.
ONCE = frozenset({TaskEventKind.CREATED, TaskEventKind.COMPLETED, TaskEventKind.BREACHED,
                  TaskEventKind.CANCELLED})


def event_id(task_id: str, kind: TaskEventKind, seen: int) -> str:
    """The event id of `task_id`'s `kind` change, after `seen` earlier events of that kind."""
    return f"{task_id}/{kind.value}" if kind in ONCE else f"{task_id}/{kind.value}/{seen + 1}"


def task_event_values(task: Any, kind: TaskEventKind, at: datetime, event_id: str,
                      operator: str | None = None, outcome: str | None = None) -> dict[str, Any]:
    """The `task_outbox` row announcing `kind` for `task` (a `Task` or a task row) as it is."""
    event = TaskEvent(kind=kind, task_id=task.task_id, instance_id=task.instance_id,
                      tenant=task.tenant, step=task.step, visit=task.visit, role=task.role,
                      operator=operator, outcome=outcome, at=iso(at) or "")
    return {"task_id": task.task_id, "kind": kind.value, "event_id": event_id,
            "key": task.instance_id, "payload": event.dump(), "created_at": at}


async def record(session: AsyncSession, task: Task, kind: TaskEventKind, at: datetime, *,
                 operator: str | None = None, outcome: str | None = None) -> str | None:
    """Add the outbox row announcing `kind` for `task` (as it is now); returns its event id,
    or None when that event is already in the outbox. (The consumer's folds do the same
    from the rows they read per batch: `BatchRows.announce`.)"""
    if kind in ONCE:
        new_id = event_id(task.task_id, kind, 0)
        if await session.scalar(select(TaskOutbox.id).where(TaskOutbox.event_id == new_id)
                                .limit(1)) is not None:
            return None
    else:
        seen = await session.scalar(
            select(func.count()).select_from(TaskOutbox)
            .where(TaskOutbox.task_id == task.task_id, TaskOutbox.kind == kind.value)
        )
        new_id = event_id(task.task_id, kind, int(seen or 0))
    session.add(TaskOutbox(**task_event_values(task, kind, at, new_id, operator, outcome)))
    return new_id


# Where a row goes: (topic, CloudEvents type).
Route = Callable[[Any], tuple[str, str]]


def message_route(topic_prefix: str) -> Route:
    """The route of `message_outbox` rows: their own topic (under this prefix) and type."""
    return lambda row: (f"{topic_prefix}{row.topic}", row.ce_type)


class OutboxPublisher:
    """Background sender of an outbox table (task events unless told otherwise); `run()` is the
    task, `kick()` asks for a pass now."""

    def __init__(self, transactions: Transactions, producer: EventProducer, topic: str,
                 clock: Clock, *,
                 table: type[TaskOutbox | MessageOutbox] = TaskOutbox,
                 route: Route | None = None, idle_interval: float = 0.5,
                 initial_backoff: float = 0.2, max_backoff: float = 10.0,
                 batch: int = 200) -> None:
        self.producer, self.topic, self.clock = producer, topic, clock
        # Reads and writes go where the consumer's folds go: on SQLite, their thread, one at
        # a time, so a `sent_at` update never holds the write lock that a fold then waits for,
        # and a pass costs the event loop one hand-off, not aiosqlite's several per statement.
        self.transactions = transactions
        self.table: Any = table
        self.route: Route = route or (lambda _row: (topic, TASK_EVENT_V1))
        self.idle_interval, self.batch = idle_interval, batch
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        backoff = self.initial_backoff
        while True:
            self._wake.clear()  # before the pass: a kick during it triggers another one
            try:
                sent = await self.publish_pending()
                delay = 0.0 if sent >= self.batch else self.idle_interval
                backoff = self.initial_backoff
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker down, timeouts, a locked database: retry
                (metrics.TASK_EVENT_FAILURES if self.table is TaskOutbox
                 else metrics.MESSAGE_FAILURES).inc()
                log.warning("%s: publish failed, retrying in %.1fs: %r",
                            self.table.__tablename__, backoff, exc)
                delay, backoff = backoff, min(backoff * 2, self.max_backoff)
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def publish_pending(self) -> int:
        """One pass: send unsent rows oldest first, stopping at the first failure (so events
        of one instance stay in order); returns how many were sent."""
        async with self._lock:
            table = self.table
            rows = await self.transactions.run(functools.partial(_unsent, table, self.batch))
            sent: list[int] = []
            try:
                # Every row is queued first (in order: the producer keeps each partition's
                # order and batches them), then the acks are taken in order, so `sent` is a
                # prefix of `rows` and a failure leaves the rest for the next pass.
                acks = []
                for row in rows:
                    topic, ce_type = self.route(row)
                    try:
                        _, ack = await self.producer.submit(
                            topic, row.key, ce_type, row.payload, event_id=row.event_id,
                            time=row.created_at)
                    except Exception as exc:
                        await self._record_failure(row.id, exc)
                        raise
                    acks.append(ack)
                for row, ack in zip(rows, acks, strict=False):
                    try:
                        await ack
                    except Exception as exc:
                        await self._record_failure(row.id, exc)
                        raise
                    sent.append(row.id)
            finally:
                if sent:
                    await self.transactions.run(functools.partial(
                        _mark_sent, table, sent, self.clock.now()))
                    (metrics.TASK_EVENTS if table is TaskOutbox
                     else metrics.MESSAGES).inc(len(sent))
            return len(sent)

    async def _record_failure(self, outbox_id: int, exc: Exception) -> None:
        table = self.table
        with contextlib.suppress(Exception):  # bookkeeping only; the row stays unsent anyway
            await self.transactions.run(lambda s: s.execute(
                update(table).where(table.id == outbox_id).values(
                    attempts=table.attempts + 1, last_error=repr(exc)[:2000])))


# A pass runs both of these after nearly every batch the consumer folds. Read and written as
# plain rows (SQLAlchemy Core), not ORM objects: the ORM's object loading and bulk-update
# bookkeeping showed in py-spy of the fold thread in the `inbox` bench; a pass of 20 rows on
# SQLite took 2.0-2.3 ms with them, 1.5-1.7 ms without (session 12, bench/results/NOTES.md).


def _unsent(table: type[TaskOutbox | MessageOutbox], limit: int, session: Session) -> list[Any]:
    """The oldest `limit` unsent rows, as rows with the table's columns as attributes."""
    t: Table = table.__table__  # type: ignore[assignment]
    return list(session.connection().execute(
        select(t).where(t.c.sent_at.is_(None)).order_by(t.c.id).limit(limit)))


def _mark_sent(table: type[TaskOutbox | MessageOutbox], ids: list[int], at: datetime,
               session: Session) -> None:
    t: Table = table.__table__  # type: ignore[assignment]
    session.connection().execute(update(t).where(t.c.id.in_(ids))
                                 .values(sent_at=at, attempts=t.c.attempts + 1))

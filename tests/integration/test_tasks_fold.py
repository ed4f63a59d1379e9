"""The tasks service's batch fold against a real database (SQLite and PostgreSQL), no broker.

One consumer batch is one transaction in which `inbox.apply_commands` and then
`journey.apply_events` fold their records into rows read once per batch
(`services.tasks.rows`). These tests put the interactions that used to be separate
transactions into one batch, and check that redelivery, replays and reorderings still land
where record-at-a-time folding did.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from schemas.messages import (
    ControlInstance,
    InstanceAction,
    InstanceEvent,
    InstanceEventKind,
    ProcessRef,
    StepCommand,
)
from services.common import migrate
from services.common.db import Transactions, make_sessionmaker
from services.router.routing import Decision
from services.tasks import inbox, journey, sla
from services.tasks import rows as batch_rows
from services.tasks.models import Instance, Job, Task, TaskOutbox, Timer, Visit
from services.tasks.rows import one_flush, written
from tests.unit.flows import World
from tests.unit.graphs import compiled
from tests.unit.test_routing_parallel import split_join

K = InstanceEventKind
P = ProcessRef(key="reman", version=1)
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def command(iid: str, step: str, visit: int = 1, step_type: str = "task",
            **extra: Any) -> StepCommand:
    return StepCommand(command_id=f"{iid}/{step}/{visit}", instance_id=iid, tenant="default",
                       process=P, step=step, step_type=step_type, visit=visit,
                       visits={step: visit}, role="technician", reason="started",
                       entered_at=at(visit), due_at=at(60), **extra)


def entered(iid: str, step: str, visit: int = 1, minute: int = 0) -> InstanceEvent:
    return InstanceEvent(kind=K.STEP_ENTERED, instance_id=iid, process=P, at=at(minute),
                         step=step, step_type="task", visit=visit)


def completed(iid: str, step: str, visit: int = 1, minute: int = 5,
              outcome: str = "pass") -> InstanceEvent:
    return InstanceEvent(kind=K.STEP_COMPLETED, instance_id=iid, process=P, at=at(minute),
                         step=step, visit=visit, outcome=outcome, operator="op-7")


@pytest.fixture()
def sessions(tasks_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(tasks_engine)


@pytest.fixture()
async def transactions(tasks_engine: AsyncEngine) -> AsyncIterator[Transactions]:
    """The consumer's: on SQLite a sync engine in a thread of its own."""
    transactions = Transactions(tasks_engine)
    yield transactions
    await transactions.close()


async def fold(transactions: Transactions, commands: Sequence[StepCommand] = (),
               events: Sequence[InstanceEvent] = ()) -> int:
    """One consumer batch: commands first, then events, in one transaction."""

    def work(session: Session) -> int:
        with one_flush(session):  # as the consumer's fold
            created = inbox.apply_commands(session, commands, T0)
            journey.apply_events(session, events, T0)
        return created

    return await transactions.run(work)


async def tasks_of(sessions: async_sessionmaker[AsyncSession], iid: str) -> dict[str, Task]:
    async with sessions() as s:
        return {t.task_id: t for t in await s.scalars(select(Task)
                                                      .where(Task.instance_id == iid))}


async def announced(sessions: async_sessionmaker[AsyncSession], iid: str) -> list[str]:
    async with sessions() as s:
        return sorted(await s.scalars(select(TaskOutbox.event_id)
                                      .where(TaskOutbox.key == iid)))


async def count(sessions: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_created_and_retired_in_one_batch_and_the_batch_again_changes_nothing(
        sessions: async_sessionmaker[AsyncSession],
        transactions: Transactions) -> None:
    batch = ([command("i1", "clean")],
             [entered("i1", "clean"), completed("i1", "clean")])
    assert await fold(transactions, *batch) == 1
    task = (await tasks_of(sessions, "i1"))["i1/clean/1"]
    assert (task.status, task.outcome, task.assignee) == ("completed", "pass", "op-7")
    assert await announced(sessions, "i1") == ["i1/clean/1/completed", "i1/clean/1/created"]
    rows = [await count(sessions, m) for m in (Task, Visit, Instance, TaskOutbox)]

    assert await fold(transactions, *batch) == 0  # redelivered after a crash before the commit
    assert [await count(sessions, m) for m in (Task, Visit, Instance, TaskOutbox)] == rows
    async with sessions() as s:
        visit = await s.scalar(select(Visit).where(Visit.instance_id == "i1"))
    assert visit is not None and (visit.outcome, visit.operator) == ("pass", "op-7")


async def test_a_command_after_its_completion_lands_completed_and_unannounced(
        sessions: async_sessionmaker[AsyncSession],
        transactions: Transactions) -> None:
    await fold(transactions, events=[entered("i2", "inspect")])
    await fold(transactions, events=[completed("i2", "inspect", outcome="fail")])
    assert await fold(transactions, [command("i2", "inspect")]) == 0  # a replay's late command
    task = (await tasks_of(sessions, "i2"))["i2/inspect/1"]
    assert (task.status, task.outcome, task.assignee) == ("completed", "fail", "op-7")
    assert await announced(sessions, "i2") == []


async def test_a_newer_visit_supersedes_the_older_in_the_same_batch_and_not_the_reverse(
        sessions: async_sessionmaker[AsyncSession],
        transactions: Transactions) -> None:
    await fold(transactions, [command("i3", "rework", 1), command("i3", "rework", 2)])
    tasks = await tasks_of(sessions, "i3")
    assert tasks["i3/rework/1"].status == "cancelled"
    assert tasks["i3/rework/2"].status == "open"
    # Visit 1's command again, late: it lands retired, announcing nothing new.
    before = await announced(sessions, "i3")
    await fold(transactions, [command("i3", "rework", 1)])
    assert await announced(sessions, "i3") == before
    assert "i3/rework/1/cancelled" in before


async def test_an_ended_instance_retires_its_tasks_timers_and_jobs(
        sessions: async_sessionmaker[AsyncSession],
        transactions: Transactions) -> None:
    await fold(transactions, [
        command("i4", "soak", step_type="timer", timer="PT1H", wake_at=at(61)),
        command("i4", "notify", step_type="automated",
                action={"type": "webhook", "url": "http://127.0.0.1:9/hook"}),
        command("i4", "review")])
    async with sessions() as s:
        assert (await s.get(Timer, "i4/soak/1")).status == "pending"  # type: ignore[union-attr]
        assert (await s.get(Job, "i4/notify/1")).status == "queued"  # type: ignore[union-attr]
    cancel = InstanceEvent(kind=K.CANCELLED, instance_id="i4", process=P, at=at(9),
                           reason="customer withdrew")
    await fold(transactions, events=[cancel])
    tasks = await tasks_of(sessions, "i4")
    assert {t.status for t in tasks.values()} == {"cancelled"}
    async with sessions() as s:
        assert (await s.get(Timer, "i4/soak/1")).status == "cancelled"  # type: ignore[union-attr]
        job = await s.get(Job, "i4/notify/1")
        assert job is not None and job.status == "cancelled" and job.finished_at is not None
        instance = await s.get(Instance, "i4")
        assert instance is not None and instance.status == "cancelled"
    assert {e.rsplit("/", 1)[1] for e in await announced(sessions, "i4")} == {
        "created", "cancelled"}


async def test_many_instances_in_one_batch_each_get_their_own_rows(
        sessions: async_sessionmaker[AsyncSession],
        transactions: Transactions) -> None:
    iids = [f"m{n}" for n in range(1200)]  # more than one IN-list chunk
    await fold(transactions, [command(i, "receive") for i in iids],
               [entered(i, "receive") for i in iids])
    await fold(transactions, [command(i, "clean") for i in iids],
               [e for i in iids for e in (completed(i, "receive"), entered(i, "clean", 1, 6))])
    async with sessions() as s:
        statuses = dict((await s.execute(
            select(Task.status, func.count()).group_by(Task.status))).all())
        open_visits = await s.scalar(select(func.count()).select_from(Visit)
                                     .where(Visit.exited_at.is_(None)))
    assert statuses == {"completed": 1200, "open": 1200}
    assert open_visits == 1200


async def test_visits_inserted_then_closed_in_one_transaction_each_close_their_own_row(
        sessions: async_sessionmaker[AsyncSession], transactions: Transactions) -> None:
    # The second fold changes visits the first one inserted, by the ids read back: a row
    # given another row's id would get another instance's outcome.
    iids = [f"v{n}" for n in range(40)]
    def work(session: Session) -> None:
        journey.apply_events(session, [entered(i, "inspect", 1) for i in iids], T0)
        journey.apply_events(session, [completed(i, "inspect", 1, outcome=f"out-{i}")
                                       for i in reversed(iids)], T0)

    await transactions.run(work)
    async with sessions() as s:
        visits = list(await s.scalars(select(Visit).where(Visit.step == "inspect")))
    assert sorted(v.instance_id for v in visits) == sorted(iids)
    assert all(v.outcome == f"out-{v.instance_id}" and v.exited_at is not None
               for v in visits)


async def test_the_instance_row_keeps_the_routers_parallel_state_and_clears_it(
        sessions: async_sessionmaker[AsyncSession],
        transactions: Transactions) -> None:
    """Events from the real routing core, folded batch by batch as the consumer would."""
    w = World(compiled(split_join()))

    async def parallel_of(*decisions: Decision) -> Any:
        await fold(transactions, events=[e for d in decisions for e in d.events])
        async with sessions() as s:
            row = await s.get(Instance, "p1")
            assert row is not None
            return row.parallel

    started = w.start("par")
    kept = await parallel_of(started)
    assert kept == {"lanes": {"a": {"split": "split/1", "branch": "a"},
                              "b": {"split": "split/1", "branch": "b"}},
                    "splits": {"split/1": {"step": "split", "branches": ["a", "b"],
                                           "arrived": [], "ended": [], "join": None,
                                           "join_visit": None, "outer": None}}}
    assert await parallel_of(started) == kept  # a redelivered batch changes nothing
    arrived = await parallel_of(w.done("a"))
    assert list(arrived["lanes"]) == ["b"] and arrived["splits"]["split/1"]["arrived"] == ["a"]
    assert await parallel_of(w.done("b")) is None  # the join fired: out of its last block
    assert await parallel_of(w.done("after")) is None

    w.start("par", instance="p2")
    await fold(transactions, events=[e for _, d in w.log[-1:] for e in d.events])
    w.feed(ControlInstance(instance_id="p2", action=InstanceAction.CANCEL))
    await fold(transactions, events=w.log[-1][1].events)
    async with sessions() as s:
        row = await s.get(Instance, "p2")
        assert row is not None and row.status == "cancelled" and row.parallel is None


async def test_a_fold_names_the_tables_it_inserted_rows_into(
        transactions: Transactions) -> None:
    """The service wakes an outbox publisher or the HTTP runner only for a batch that gave it
    new rows (`rows.written`); a redelivered batch wakes nothing."""

    def batch(commands: Sequence[StepCommand], events: Sequence[InstanceEvent] = (),
              ) -> Any:
        def work(session: Session) -> frozenset[str]:
            inbox.apply_commands(session, commands, T0)
            journey.apply_events(session, events, T0)
            return written(session)
        return work

    review = batch([command("i9", "review")], [entered("i9", "review")])
    assert await transactions.run(review) == {"tasks", "task_outbox", "instances", "visits"}
    assert await transactions.run(review) == frozenset()  # redelivered: nothing new
    hook = batch([command("i9", "notify", step_type="automated",
                          action={"type": "webhook", "url": "http://127.0.0.1:9/hook"})])
    assert await transactions.run(hook) == {"tasks", "task_outbox", "jobs"}
    # A timer the automation cannot run holds the instance: a message the router is owed.
    broken = batch([command("i9", "soak", step_type="timer", timer="not a duration")])
    assert "message_outbox" in await transactions.run(broken)


@contextlib.contextmanager
def statements() -> Iterator[Counter[str]]:
    """The SQL statements run meanwhile, by their first four words."""
    seen: Counter[str] = Counter()

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen[" ".join(statement.split()[:4])] += 1

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


async def test_a_batch_of_commands_and_events_writes_each_table_once(
        sessions: async_sessionmaker[AsyncSession], transactions: Transactions) -> None:
    """A consumer's batch (four instances each completing a step, entering the next and
    commanded to do it) writes its rows together: one INSERT per table, one UPDATE per table
    and set of columns, though two folds changed them (`rows.one_flush`). And the fold does
    not ask whether an instance has visits when the router says the step's type."""
    iids = [f"s{n}" for n in range(4)]
    await fold(transactions, [command(i, "clean") for i in iids],
               [entered(i, "clean") for i in iids])
    with statements() as seen:
        await fold(transactions, [command(i, "inspect") for i in iids],
                   [e for i in iids for e in (completed(i, "clean"), entered(i, "inspect"))])
    writes = {k: n for k, n in seen.items() if k.startswith(("INSERT", "UPDATE"))}
    assert writes and all(n == 1 for n in writes.values()), writes
    assert "INSERT INTO task_outbox (task_id," in writes  # created and completed: one INSERT
    assert not any(k.startswith("SELECT DISTINCT visits.instance_id") for k in seen), seen
    assert sorted(await announced(sessions, "s0")) == [
        "s0/clean/1/completed", "s0/clean/1/created", "s0/inspect/1/created"]


async def test_without_step_types_the_first_visit_is_the_start_marker_and_later_ones_open(
        sessions: async_sessionmaker[AsyncSession], transactions: Transactions) -> None:
    """A router that does not say a step's type: the instance's first visit is taken for the
    start step (entered and left at once), later ones for steps to do, in a later batch too,
    where the first visit is closed and only the database knows of it."""

    def untyped(step: str, minute: int) -> InstanceEvent:
        return InstanceEvent(kind=K.STEP_ENTERED, instance_id="u1", process=P, at=at(minute),
                             step=step, visit=1)

    await fold(transactions, events=[untyped("start", 0)])
    await fold(transactions, events=[untyped("receive", 1)])
    async with sessions() as s:
        visits = {v.step: v for v in await s.scalars(select(Visit)
                                                     .where(Visit.instance_id == "u1"))}
        row = await s.get(Instance, "u1")
    assert visits["start"].exited_at is not None  # the marker
    assert visits["receive"].exited_at is None
    assert row is not None and row.active_steps == ["receive"]


# The reads a batch makes (`services.tasks.rows`), and the column each must find its rows by.
BATCH_READS = {
    "_INSTANCES": "instance_id", "_ACTIVE_TASKS": "instance_id", "_ENDED_TASKS": "instance_id",
    "_OPEN_VISITS": "instance_id", "_CLOSED_VISITS": "instance_id", "_VISITED": "instance_id",
    "_PENDING_TIMERS": "instance_id", "_LIVE_JOBS": "instance_id", "_TASK_EVENTS": "task_id",
}


async def sqlite_plan(query: Any, tmp_path: Path) -> list[str]:
    """How SQLite runs `query` on a migrated tasks database: EXPLAIN QUERY PLAN's lines."""
    db = tmp_path / "tasks.db"
    await migrate.upgrade(f"sqlite+aiosqlite:///{db}", "tasks")
    sql = str(query.compile(dialect=sqlite.dialect(),
                            compile_kwargs={"literal_binds": True, "render_postcompile": True}))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [detail for *_, detail in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]


@pytest.mark.parametrize("read", sorted(BATCH_READS))
async def test_on_sqlite_each_read_of_a_batch_searches_by_its_instances_not_by_status(
        read: str, tmp_path: Path) -> None:
    """A read that SQLite answers from a status index scans every open task or pending
    timer of the inbox, once per batch: fine in a test, slow with a real backlog."""
    query = getattr(batch_rows, read).params(ids=["i1", "i2"], steps=["s1"])
    plan = await sqlite_plan(query, tmp_path)
    assert len(plan) == 1 and plan[0].startswith("SEARCH"), plan
    assert f"({BATCH_READS[read]}=?" in plan[0], plan


async def test_on_sqlite_the_sla_sweep_reads_only_tasks_already_due(tmp_path: Path) -> None:
    plan = await sqlite_plan(sla.overdue(T0), tmp_path)
    assert plan[0].startswith("SEARCH"), plan
    assert "(status=? AND breached_at=? AND due_at>? AND due_at<?)" in plan[0], plan

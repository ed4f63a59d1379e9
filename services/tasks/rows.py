"""One micro-batch's rows, read once: the inbox and journey folds change these rows in memory
and `flush()` writes what changed, a statement per table and kind of change.

Asking the database per record (is this command new? is the instance over? which tasks are
active?) cost 5–10 statements per record, and on SQLite each statement was several hand-offs to
aiosqlite's thread: the fold managed ~25 completions/s. ORM objects read per batch and written
by the unit of work got it to ~400/s, most of it spent building and flushing those objects.
So the fold works on plain rows (`Row`: a dict with attribute access that remembers what
changed): `BatchRows.of(session, ids, steps)` reads what the folds can need in a few `IN`
queries (per instance its `instances` row, active tasks, open visits, live timers and jobs; per
(instance, step) of the batch that step's ended tasks and visits too; and those tasks' outbox
event ids), indexes what the folds add so a later record of the batch sees an earlier one's
rows, and `flush()` inserts the new rows (executemany) and updates the changed ones by primary
key, grouped by the columns that changed. The folds are sync code: the consumer runs them in
`services.common.db.Transactions` (on SQLite, a thread of its own with one hand-off per batch).
`python -m bench.run --only fold` measures it: 1,833 completions/s on SQLite (session 7;
636/s in session 3, 1,280/s on PostgreSQL then; bench/results/NOTES.md).

Nothing may change those rows between the read and the write: on SQLite the transaction takes
the write lock before it reads (`BEGIN IMMEDIATE`; the HTTP API's writes wait for it), on
PostgreSQL the instances' rows and tasks are read `FOR UPDATE`.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from schemas.messages import TaskEventKind
from services.tasks import outbox
from services.tasks.calendar import BusinessCalendar
from services.tasks.models import (
    ACTIVE,
    CANCELLED,
    LIVE_JOB,
    PENDING,
    Calendar,
    Instance,
    Job,
    Task,
    TaskOutbox,
    Timer,
    Visit,
)

CHUNK = 500  # ids per IN list
_KEY = "flowline.batch_rows"
_WRITTEN = "flowline.written"
_DEFERRED = "flowline.flush_deferred"


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


TASKS, INSTANCES, VISITS = _table(Task), _table(Instance), _table(Visit)
TIMERS, JOBS, TASK_OUTBOX = _table(Timer), _table(Job), _table(TaskOutbox)
CALENDARS = _table(Calendar)
# Rows with a database-made key that a fold may change after they were inserted: their new
# ids are read back (RETURNING), matched to the rows by the columns named here, which a
# unique constraint covers (uq_visit). (Outbox rows are never changed here.)
CHANGED_AFTER_INSERT: dict[Table, tuple[str, ...]] = {VISITS: ("instance_id", "step", "visit")}


def wrote(session: Session, table: str) -> None:
    """Note that this transaction inserted rows into `table` (see `written`)."""
    session.info.setdefault(_WRITTEN, set()).add(table)


def written(session: Session) -> frozenset[str]:
    """The tables this transaction inserted rows into, so far: after a fold commits, the
    service wakes only the loops with new work (a publisher of an outbox nobody wrote to
    would find nothing, and each look is a query)."""
    return frozenset(session.info.get(_WRITTEN, ()))


@contextlib.contextmanager
def one_flush(session: Session) -> Iterator[None]:
    """Within the block the folds' `flush()` calls wait, and what they all changed is written
    once when it ends: a consumer's batch of commands and events makes one INSERT per table
    and one UPDATE per table and set of columns, not one per fold. (Nothing is written if the
    block raises: its transaction is rolled back.)"""
    session.info[_DEFERRED] = True
    try:
        yield
    finally:
        session.info.pop(_DEFERRED, None)
    rows = session.info.get(_KEY)
    if rows is not None:
        rows.flush()


class Row(dict[str, Any]):
    """A row of `table` as a dict with attribute access; `changed` names the columns set since
    it was read or written."""

    __slots__ = ("changed", "table")

    def __init__(self, table: Table, values: Any) -> None:
        super().__init__(values)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "changed", set())

    @classmethod
    def new(cls, table: Table, **values: Any) -> Row:
        """A row to insert: every column given, or its default (None when it has none)."""
        for key, default in _defaults(table):
            if key not in values:
                if default is None:
                    values[key] = None
                elif default.is_callable:
                    values[key] = default.arg(None)
                else:
                    values[key] = default.arg
        return cls(table, values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value
        self.changed.add(name)


@functools.cache
def _defaults(table: Table) -> tuple[tuple[str, Any], ...]:
    """(column key, its default or None) of each column a new row gets a value for: all but
    a database-made key. Walked once per table, not per row (`Row.new` was ~5 % of a
    profiled fold; no gain measurable unprofiled, bench/results/NOTES.md, session 8)."""
    return tuple((column.key, column.default) for column in table.columns
                 if column is not table.autoincrement_column)


def as_row(obj: Any) -> Row:
    """An ORM object built elsewhere (e.g. a new `Timer`), as a row to insert."""
    table = obj.__table__
    return Row.new(table, **{c.key: getattr(obj, c.key) for c in table.columns
                             if getattr(obj, c.key) is not None})


def _chunks(ids: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


# The reads, built once: building a statement per batch was a tenth of the fold's time.
# `ids` and `steps` are expanding parameters (IN lists); FOR UPDATE is dropped on SQLite.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_STEPS: BindParameter[Any] = bindparam("steps", expanding=True)
_INSTANCES = select(INSTANCES).where(INSTANCES.c.instance_id.in_(_IDS)).with_for_update()
_ACTIVE_TASKS = (select(TASKS).where(TASKS.c.instance_id.in_(_IDS), TASKS.c.status.in_(ACTIVE))
                 .with_for_update())
_ENDED_TASKS = (select(TASKS).where(TASKS.c.instance_id.in_(_IDS), TASKS.c.step.in_(_STEPS),
                                    TASKS.c.status.not_in(ACTIVE)).with_for_update())
_OPEN_VISITS = select(VISITS).where(VISITS.c.instance_id.in_(_IDS), VISITS.c.exited_at.is_(None))
_CLOSED_VISITS = select(VISITS).where(VISITS.c.instance_id.in_(_IDS), VISITS.c.step.in_(_STEPS),
                                      VISITS.c.exited_at.is_not(None))
_VISITED = select(VISITS.c.instance_id).where(VISITS.c.instance_id.in_(_IDS)).distinct()
_PENDING_TIMERS = select(TIMERS).where(TIMERS.c.instance_id.in_(_IDS), TIMERS.c.status == PENDING)
_LIVE_JOBS = select(JOBS).where(JOBS.c.instance_id.in_(_IDS), JOBS.c.status.in_(LIVE_JOB))
_CALENDAR = select(CALENDARS.c.spec).where(CALENDARS.c.tenant == bindparam("tenant"))
_TASK_EVENTS = (select(TASK_OUTBOX.c.task_id, TASK_OUTBOX.c.kind, TASK_OUTBOX.c.event_id)
                .where(TASK_OUTBOX.c.task_id.in_(_IDS)))


class BatchRows:
    """The rows of the instances a batch touches, by instance, and what the folds changed."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.loaded: set[str] = set()
        self._pairs: set[tuple[str, str]] = set()
        self.instances: dict[str, Row] = {}
        self.tasks: dict[str, Row] = {}
        self._tasks: dict[str, list[Row]] = {}
        self._visits: dict[str, list[Row]] = {}
        self._visited: set[str] = set()  # instances with a visit in the database...
        self._asked: set[str] = set()  # ...of those asked about (`has_visits`)
        self._timers: dict[str, list[Row]] = {}
        self._jobs: dict[str, list[Row]] = {}
        self._once: set[str] = set()  # outbox event ids of once-only changes
        self._seen: Counter[tuple[str, str]] = Counter()  # (task, kind) -> events so far
        self._calendars: dict[str, BusinessCalendar | None] = {}
        self._read: list[Row] = []  # rows in the database: updated when they change
        self._new: dict[Table, list[Row]] = defaultdict(list)  # rows to insert

    @classmethod
    def of(cls, session: Session, instance_ids: Iterable[str],
           steps: Iterable[tuple[str, str]] = ()) -> BatchRows:
        """The session's batch rows, with what the folds may need read if it was not yet: per
        instance its row, active tasks, open visits and live timers and jobs; per (instance,
        step) in `steps`, that step's other tasks and visits too."""
        rows = session.info.get(_KEY)
        if rows is None:
            rows = session.info[_KEY] = cls(session)
            if session.bind is not None and session.bind.dialect.name == "sqlite":
                session.execute(text("BEGIN IMMEDIATE"))
        tasks = rows._load(sorted(set(instance_ids) - rows.loaded))
        tasks += rows._load_steps(sorted(set(steps) - rows._pairs))
        rows._add_tasks(tasks)
        return rows

    def _select(self, table: Table, query: Select[Any], **params: Any) -> list[Row]:
        result = self.session.connection().execute(query, params)
        keys = list(result.keys())
        rows = [Row(table, zip(keys, values, strict=True)) for values in result]
        self._read += rows
        return rows

    def _load(self, ids: list[str]) -> list[Row]:
        """Read what the folds may need of these instances; their active tasks, to be added."""
        tasks: list[Row] = []
        if not ids:
            return tasks
        self.loaded.update(ids)
        for iid in ids:
            for index in (self._tasks, self._visits, self._timers, self._jobs):
                index[iid] = []
        for part in _chunks(ids):
            for row in self._select(INSTANCES, _INSTANCES, ids=part):
                self.instances[row.instance_id] = row
            tasks += self._select(TASKS, _ACTIVE_TASKS, ids=part)
            for visit in self._select(VISITS, _OPEN_VISITS, ids=part):
                self._visits[visit.instance_id].append(visit)
            for timer in self._select(TIMERS, _PENDING_TIMERS, ids=part):
                self._timers[timer.instance_id].append(timer)
            for job in self._select(JOBS, _LIVE_JOBS, ids=part):
                self._jobs[job.instance_id].append(job)
        return tasks

    def _load_steps(self, pairs: list[tuple[str, str]]) -> list[Row]:
        """The tasks and visits of (instance, step) pairs that `_load` left out: ended ones
        (the tasks to be added)."""
        tasks: list[Row] = []
        if not pairs:
            return tasks
        self._pairs.update(pairs)
        for part in _chunks(pairs):
            # instance IN (...) AND step IN (...), then the pairs themselves: SQLite runs a
            # tuple IN as a table scan.
            wanted = set(part)
            ids, steps = sorted({i for i, _ in part}), sorted({s for _, s in part})
            tasks += [t for t in self._select(TASKS, _ENDED_TASKS, ids=ids, steps=steps)
                      if (t.instance_id, t.step) in wanted]
            for visit in self._select(VISITS, _CLOSED_VISITS, ids=ids, steps=steps):
                if (visit.instance_id, visit.step) in wanted:
                    self._visits[visit.instance_id].append(visit)
        return tasks

    def _add_tasks(self, tasks: list[Row]) -> None:
        """Index tasks just read, and the outbox events they already have (one query for all
        that one `of` read)."""
        for task in tasks:
            self._index_task(task)
        for task_ids in _chunks([t.task_id for t in tasks]):
            events = self.session.connection().execute(_TASK_EVENTS, {"ids": task_ids})
            for task_id, kind, event_id in events:
                self._once.add(event_id)
                self._seen[task_id, kind] += 1

    def _index_task(self, task: Row) -> None:
        self.tasks[task.task_id] = task
        self._tasks[task.instance_id].append(task)

    # --- reads ----------------------------------------------------------------------------

    def tasks_of(self, instance_id: str) -> list[Row]:
        return self._tasks[instance_id]

    def visits_of(self, instance_id: str) -> list[Row]:
        return self._visits[instance_id]

    def has_visits(self, instance_id: str) -> bool:
        """Whether the instance has any visit. Only a router that does not say a step's type
        makes the fold ask, so the database is asked then (for every instance loaded and not
        yet asked about, in one query), not with every batch."""
        if self._visits[instance_id]:
            return True
        if instance_id not in self._asked:
            unasked = sorted(self.loaded - self._asked)
            self._asked.update(unasked)
            for part in _chunks(unasked):
                self._visited.update(self.session.connection().scalars(_VISITED, {"ids": part}))
        return instance_id in self._visited

    def visit(self, instance_id: str, step: str, visit: int) -> Row | None:
        return next((v for v in self._visits[instance_id]
                     if v.step == step and v.visit == visit), None)

    def calendar(self, tenant: str) -> BusinessCalendar | None:
        if tenant not in self._calendars:
            spec = self.session.connection().scalar(_CALENDAR, {"tenant": tenant})
            self._calendars[tenant] = BusinessCalendar.from_json(spec) if spec is not None else None
        return self._calendars[tenant]

    # --- writes -----------------------------------------------------------------------------

    def add(self, row: Row) -> None:
        """A new row, inserted by the next `flush()` and seen by the folds from now on."""
        self._new[row.table].append(row)
        if row.table is INSTANCES:
            self.instances[row.instance_id] = row
        elif row.table is TASKS:
            self._index_task(row)
        elif row.table is VISITS:
            self._visits[row.instance_id].append(row)
        elif row.table is TIMERS:
            if row.status == PENDING:
                self._timers[row.instance_id].append(row)
        elif row.table is JOBS and row.status in LIVE_JOB:
            self._jobs[row.instance_id].append(row)

    def announce(self, task: Row, kind: TaskEventKind, at: datetime, *,
                 operator: str | None = None, outcome: str | None = None) -> None:
        """The task event for a change made to `task` in this batch (see `outbox.record`)."""
        seen = self._seen[task.task_id, kind.value]
        event_id = outbox.event_id(task.task_id, kind, seen)
        if event_id in self._once:
            return
        self._once.add(event_id)
        self._seen[task.task_id, kind.value] += 1
        values = outbox.task_event_values(task, kind, at, event_id, operator, outcome)
        self._new[TASK_OUTBOX].append(Row.new(TASK_OUTBOX, **values))

    def cancel_active(self, instance_id: str, at: datetime, why: str,
                      which: Callable[[Row], bool] = lambda _task: True,
                      outcome: str | None = None) -> None:
        """Cancel the instance's open and claimed tasks that `which` picks, announcing each."""
        for task in self._tasks[instance_id]:
            if task.status in ACTIVE and which(task):
                task.status, task.completed_at, task.outcome = CANCELLED, at, outcome
                self.announce(task, TaskEventKind.CANCELLED, at, outcome=why)

    def retire_automation(self, instance_id: str, at: datetime, step: str | None = None,
                          below_visit: int | None = None,
                          up_to_visit: int | None = None) -> None:
        """The step (or the whole instance) is over: its pending timers and live jobs are too."""

        def over(row: Row) -> bool:
            return ((step is None or row.step == step)
                    and (below_visit is None or row.visit < below_visit)
                    and (up_to_visit is None or row.visit <= up_to_visit))

        timers = self._timers[instance_id]
        for timer in [t for t in timers if over(t)]:
            timer.status = CANCELLED
            timers.remove(timer)
        jobs = self._jobs[instance_id]
        for job in [j for j in jobs if over(j)]:
            job.status, job.finished_at = CANCELLED, at
            job.lease_token = job.lease_expires_at = None
            jobs.remove(job)

    def flush(self) -> None:
        """Write what the folds did so far: new rows (one executemany per table), then changed
        ones (one executemany per table and set of changed columns). Inside `one_flush`, it
        waits for the block's end."""
        if self.session.info.get(_DEFERRED):
            return
        for table, new in self._new.items():
            if not new:
                continue
            wrote(self.session, table.name)
            pk = table.autoincrement_column
            if pk is None or table not in CHANGED_AFTER_INSERT:
                self.session.connection().execute(_insert(table), [dict(row) for row in new])
            else:  # keep the ids, so a later change can update the row
                # Matched by key, not by order: asking SQLite for RETURNING in parameter order
                # makes SQLAlchemy insert one row per statement (five visit INSERTs in a fold of
                # 5 completions; matched by key, one).
                natural = CHANGED_AFTER_INSERT[table]
                returned = self.session.connection().execute(
                    _insert_returning(table), [dict(row) for row in new])
                ids = {tuple(found[1:]): found[0] for found in returned}
                for row in new:
                    dict.__setitem__(row, pk.key, ids[tuple(row[c] for c in natural)])
            for row in new:
                row.changed.clear()
            if table is not TASK_OUTBOX:
                self._read += new
        self._new.clear()
        changes: dict[tuple[Table, frozenset[str]], list[Row]] = defaultdict(list)
        for row in self._read:
            if row.changed:
                changes[row.table, frozenset(row.changed)].append(row)
        for (table, columns), changed in changes.items():
            (key,) = table.primary_key.columns
            self.session.connection().execute(
                _update(table, columns),
                [{"pk_": row[key.key], **{f"{c}_": row[c] for c in columns}} for row in changed])
            for row in changed:
                row.changed.clear()


@functools.cache
def _insert(table: Table) -> Insert:
    """An insert of whole rows, for executemany (built once: its cache key is then kept)."""
    return insert(table)


@functools.cache
def _insert_returning(table: Table) -> Insert:
    """An insert that reads back the new rows' keys, with the columns that match them up."""
    pk = table.autoincrement_column
    assert pk is not None
    return insert(table).returning(pk, *(table.c[c] for c in CHANGED_AFTER_INSERT[table]))


@functools.cache
def _update(table: Table, columns: frozenset[str]) -> Update:
    """Set `columns` of the row whose key is `pk_` (values `<column>_`), for executemany."""
    (key,) = table.primary_key.columns
    return (update(table).where(key == bindparam("pk_"))
            .values({c: bindparam(f"{c}_", type_=table.c[c].type) for c in columns}))

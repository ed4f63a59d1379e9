"""`Transactions`: a sync function in one transaction, on SQLite in a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from services.common import migrate
from services.common.db import Transactions, make_engine, make_sessionmaker
from services.tasks.models import MessageOutbox
from tests.conftest import async_wait_for

pytestmark = pytest.mark.integration
AT = datetime(2026, 11, 22, tzinfo=UTC)


def message(event_id: str) -> MessageOutbox:
    return MessageOutbox(event_id=event_id, topic="t", ce_type="c", key="k", payload={},
                         created_at=AT)


async def migrated_sqlite(tmp_path: Path) -> AsyncEngine:
    """An engine on a migrated tasks database in a SQLite file, where `Transactions` runs its
    functions in a thread of its own."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}"
    await migrate.upgrade(url, "tasks")
    return make_engine(url)


async def outbox_ids(engine: AsyncEngine) -> list[str]:
    async with make_sessionmaker(engine)() as s:
        return list(await s.scalars(select(MessageOutbox.event_id).order_by(MessageOutbox.id)))


async def test_commits_what_the_function_did_and_returns_its_result(
        tasks_engine: AsyncEngine) -> None:
    transactions = Transactions(tasks_engine)
    try:
        def work(session: Session) -> int:
            session.add_all([message("m1"), message("m2")])
            session.flush()
            return session.scalar(select(func.count()).select_from(MessageOutbox)) or 0

        assert await transactions.run(work) == 2
    finally:
        await transactions.close()
    assert await outbox_ids(tasks_engine) == ["m1", "m2"]  # committed, seen by another connection


async def test_rolls_back_everything_when_the_function_raises(
        tasks_engine: AsyncEngine) -> None:
    transactions = Transactions(tasks_engine)
    try:
        def work(session: Session) -> None:
            session.add(message("kept-out"))
            session.flush()  # written to the transaction, then rolled back
            raise ValueError("no")

        with pytest.raises(ValueError, match="no"):
            await transactions.run(work)
        await transactions.run(lambda session: session.add(message("after")))
    finally:
        await transactions.close()
    assert await outbox_ids(tasks_engine) == ["after"]


async def test_on_sqlite_a_wait_for_the_write_lock_leaves_the_event_loop_free(
        tmp_path: Path) -> None:
    engine = await migrated_sqlite(tmp_path)
    transactions = Transactions(engine)
    entered = threading.Event()
    try:
        async with engine.connect() as holder:  # another connection takes the write lock
            await holder.execute(text("BEGIN IMMEDIATE"))

            def work(session: Session) -> None:
                entered.set()
                session.execute(text("BEGIN IMMEDIATE"))  # waits for the holder's lock
                session.add(message("waited"))

            run = asyncio.create_task(transactions.run(work))
            await async_wait_for(entered.is_set, within=10, what="the function to start")
            # The loop runs on while the function waits in its thread: this query goes through
            # (were the wait on the loop, it would come only after the 30 s busy timeout).
            assert (await holder.execute(text("SELECT 1"))).scalar() == 1
            assert not run.done()
            await holder.rollback()
        await asyncio.wait_for(run, 10)
    finally:
        await transactions.close()
    assert await outbox_ids(engine) == ["waited"]
    await engine.dispose()


async def test_on_sqlite_commits_leave_the_wal_to_the_checkpointer(tmp_path: Path) -> None:
    """The transactions' connection never checkpoints in a commit (a commit that did waited
    for ~4 MB to be copied and synced); the checkpointer's thread copies the WAL instead."""
    engine = await migrated_sqlite(tmp_path)
    transactions = Transactions(engine, checkpoint_every=0)
    checkpointer = transactions.checkpointer
    assert checkpointer is not None
    try:
        def autocheckpoint(session: Session) -> Any:
            return session.execute(text("PRAGMA wal_autocheckpoint")).scalar()

        assert await transactions.run(autocheckpoint) == 0
        for n in range(40):  # ~8 MB of WAL: past SQLite's own 1,000-page checkpoint twice
            await transactions.run(lambda session, n=n: session.add_all(
                MessageOutbox(event_id=f"m{n}-{i}", topic="t", ce_type="c", key="k",
                              payload={"blob": "x" * 4000}, created_at=AT)
                for i in range(50)))

        def all_copied() -> bool:
            return (checkpointer.last is not None and checkpointer.last[0] == 0
                    and checkpointer.last[1] == checkpointer.last[2] > 0)

        async def settled() -> bool:  # a checkpoint after the last commit copied it all
            await transactions.run(lambda session: session.execute(text("SELECT 1")))
            return all_copied()

        await async_wait_for(settled, within=10, what="a checkpoint of the whole WAL")
        assert checkpointer.runs >= 2
    finally:
        await transactions.close()
    assert len(await outbox_ids(engine)) == 40 * 50
    await engine.dispose()


async def test_the_checkpointer_runs_at_most_once_per_interval(tmp_path: Path) -> None:
    engine = await migrated_sqlite(tmp_path)
    transactions = Transactions(engine, checkpoint_every=3600)
    checkpointer = transactions.checkpointer
    assert checkpointer is not None
    try:
        for n in range(5):
            await transactions.run(lambda session, n=n: session.add(message(f"m{n}")))
        await async_wait_for(lambda: checkpointer.runs == 1, within=10,
                             what="the first commit's checkpoint")
        await transactions.run(lambda session: session.add(message("later")))
    finally:
        await transactions.close()
    assert checkpointer.runs == 1  # the first commit's; the others came within the hour
    await engine.dispose()

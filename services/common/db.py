"""Async SQLAlchemy engines: SQLite by default, PostgreSQL (asyncpg) in production and CI."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from services.common import jsonio

log = logging.getLogger(__name__)

T = TypeVar("T")
SQLITE_BUSY_SECONDS = 30  # a writer waits this long for another's write lock
CHECKPOINT_EVERY_S = 1.0  # `Checkpointer`: at most one WAL checkpoint a second while writing


# JSON columns through orjson (a tenth of `json`'s time: `jsonio`); what is stored is read
# back by `json` where orjson refuses it (a NaN an older version stored).
JSON_IO: dict[str, Any] = {"json_serializer": jsonio.dumps_text,
                           "json_deserializer": jsonio.loads_stored}


def make_engine(url: str) -> AsyncEngine:
    """An engine for `url`; SQLite gets WAL and a busy timeout so readers don't block writers."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS},
                                     **JSON_IO)
        _sqlite_pragmas(engine.sync_engine)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **JSON_IO)


def _sqlite_pragmas(engine: Engine, *, autocheckpoint: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if not autocheckpoint:  # a `Checkpointer` does it
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()


class Checkpointer:
    """Checkpoints a SQLite database's WAL from a thread and connection of its own.

    By default SQLite checkpoints in the commit that takes the WAL past 1,000 pages: that
    commit copies ~4 MB into the database file and syncs it. In the tasks service that is the
    fold's thread, so the batch committing then, and every record queued behind it, waited:
    folding batches of 4 completions, one transaction in 34 took over 15 ms (p99 18-21 ms;
    with this, one in 1,000 and p99 8-11 ms: bench/results/NOTES.md, session 17). The
    connections of `Transactions` now never checkpoint (`wal_autocheckpoint=0`; the async
    engine's keep SQLite's default, and rarely reach 1,000 pages); after a commit, `due()`
    starts a PASSIVE checkpoint here when none ran for `every` seconds. PASSIVE waits for no
    reader or writer: what a reader still needs stays in the WAL for the next one.
    """

    def __init__(self, path: str, every: float = CHECKPOINT_EVERY_S) -> None:
        self.path, self.every = path, every
        self.runs = 0
        self.last: tuple[int, int, int] | None = None  # (busy, WAL frames, frames copied)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._connection: sqlite3.Connection | None = None  # made and used in `_thread` only
        self._lock = threading.Lock()
        self._running = False
        self._started = float("-inf")  # monotonic time the last checkpoint was started

    def due(self) -> None:
        """A transaction committed: start a checkpoint if one is due and none is under way."""
        with self._lock:
            now = time.monotonic()
            if self._running or now - self._started < self.every:
                return
            self._running, self._started = True, now
        self._thread.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(self.path, timeout=SQLITE_BUSY_SECONDS)
            busy, frames, copied = self._connection.execute(
                "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.last, self.runs = (busy, frames, copied), self.runs + 1
        except sqlite3.Error:  # the next one tries again; the WAL just grows meanwhile
            log.exception("WAL checkpoint of %s failed", self.path)
        finally:
            with self._lock:
                self._running = False

    def close(self) -> None:
        """Wait for a checkpoint under way and close the connection (the last connection to
        close checkpoints what is left)."""

        def close_connection() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        self._thread.submit(close_connection).result()
        self._thread.shutdown()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


class Transactions:
    """Runs a function of a plain (sync) `Session` in a transaction of its own.

    For code that runs many small statements in one transaction (the tasks service's fold).
    SQLAlchemy's asyncio layer over aiosqlite hands each statement to aiosqlite's thread
    several times: 1.26 ms per primary-key `SELECT` on this machine, against 0.10 ms on a
    sync engine and 0.006 ms in sqlite3 itself (bench/results/NOTES.md, session 7). So on a
    SQLite file the function runs in a thread of its own, over a sync engine on the same file:
    one hand-off per transaction, and a wait for the write lock blocks that thread, never the
    event loop. Elsewhere (asyncpg has no thread to hand off to) it runs in
    `AsyncSession.run_sync`, which costs what `await session.execute` costs. On SQLite its
    commits leave checkpointing the WAL to a `Checkpointer` (every `checkpoint_every` s).

    A caller cancelled while its function runs in the thread does not stop it: the
    transaction then commits or rolls back by itself, as it would have.
    """

    def __init__(self, engine: AsyncEngine, checkpoint_every: float = CHECKPOINT_EVERY_S,
                 ) -> None:
        self._sessions = make_sessionmaker(engine)
        self._engine: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self.checkpointer: Checkpointer | None = None
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._engine = create_engine(url.set(drivername="sqlite"),
                                         connect_args={"timeout": SQLITE_BUSY_SECONDS},
                                         **JSON_IO)
            _sqlite_pragmas(self._engine, autocheckpoint=False)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-transactions")
            self.checkpointer = Checkpointer(url.database, checkpoint_every)

    async def run(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in one transaction: committed when it returns, rolled back if it
        raises (the error is raised here)."""
        if self._thread is None:
            async with self._sessions() as session, session.begin():
                return await session.run_sync(work)
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._in_thread,
                                                                 work)

    def _in_thread(self, work: Callable[[Session], Any]) -> Any:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            result = work(session)
        if self.checkpointer is not None:
            self.checkpointer.due()
        return result

    async def close(self) -> None:
        """Wait for a transaction under way, then close the thread's connections."""
        if self._thread is not None and self._engine is not None:
            # Disposed in the thread: a sqlite3 connection may only be closed where it was made.
            await asyncio.get_running_loop().run_in_executor(self._thread, self._engine.dispose)
            await asyncio.to_thread(self._thread.shutdown)
            self._thread = None
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.close)
            self.checkpointer = None

"""Async SQLAlchemy engines: SQLite by default, PostgreSQL (asyncpg) in production and CI."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from services.common import jsonio

T = TypeVar("T")
SQLITE_BUSY_SECONDS = 30  # a writer waits this long for another's write lock


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


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


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
    `AsyncSession.run_sync`, which costs what `await session.execute` costs.

    A caller cancelled while its function runs in the thread does not stop it: the
    transaction then commits or rolls back by itself, as it would have.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = make_sessionmaker(engine)
        self._engine: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._engine = create_engine(url.set(drivername="sqlite"),
                                         connect_args={"timeout": SQLITE_BUSY_SECONDS},
                                         **JSON_IO)
            _sqlite_pragmas(self._engine)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-transactions")

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
            return work(session)

    async def close(self) -> None:
        """Wait for a transaction under way, then close the thread's connections."""
        if self._thread is not None and self._engine is not None:
            # Disposed in the thread: a sqlite3 connection may only be closed where it was made.
            await asyncio.get_running_loop().run_in_executor(self._thread, self._engine.dispose)
            await asyncio.to_thread(self._thread.shutdown)
            self._thread = None

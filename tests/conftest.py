"""Fixtures that start real things: one broker per session, fresh topics per test.

`FLOWLINE_BROKER=tansu|kafka` picks the local broker (Tansu by default); `FLOWLINE_KAFKA_BOOTSTRAP`
points at an external one. With `CI=true` a missing broker fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.settings import Settings

IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """Skip locally when infrastructure is missing; fail in CI, where it must be there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"infrastructure missing in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


async def async_wait_for(predicate: Callable[[], Any], within: float = 30.0,
                         interval: float = 0.05, what: str = "condition") -> Any:
    """`wait_for` for coroutines: `predicate` may be sync or return an awaitable."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within}s waiting for {what}; last value: {last!r}")



async def committed_offsets(bootstrap: str, group: str, topic: str,
                            partitions: int) -> dict[int, int]:
    """Consumer group `group`'s committed offsets of `topic`, by partition (0 where none).
    Its consumer never subscribes, so it reads the group's offsets without joining it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) or 0
                for p in range(partitions)}
    finally:
        await consumer.stop()

@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run an ASGI `app` with uvicorn in a background thread on a free port; yield its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 60, what="uvicorn start")
        assert server.started, "the app failed to start (see the log above)"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="session")
def broker() -> Iterator[Any]:
    """A running Kafka-compatible broker for the whole session."""
    from services.common.brokers import BrokerError, broker_from_env

    try:
        b = broker_from_env()
        b.start()
    except BrokerError as exc:
        need(False, f"no broker: {exc}")
        raise
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture()
def settings(broker: Any, tmp_path: Path) -> Settings:
    """Settings with a unique topic prefix and data dir, so tests never see each other's data."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    return Settings(
        kafka_bootstrap=broker.bootstrap,
        fetch_max_wait_ms=broker.fetch_max_wait_ms,
        topic_prefix=prefix,
        partitions=4,
        data_dir=tmp_path / "data",
    )


# PostgreSQL: `FLOWLINE_TEST_POSTGRES_URL` (postgresql+asyncpg://user:pw@host:port/admin_db) names a
# server we may create databases on; deploy/postgres/start-local.sh starts a throwaway one.
POSTGRES_ENV = "FLOWLINE_TEST_POSTGRES_URL"


async def _pg_admin(url: str, *statements: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = await asyncpg.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                                 database=u.database)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test module, dropped afterwards."""
    from sqlalchemy.engine import make_url

    admin = os.environ.get(POSTGRES_ENV, "")
    need(bool(admin), f"{POSTGRES_ENV} is not set (deploy/postgres/start-local.sh prints one)")
    name = f"flowline_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Run a test on both databases: None means the default SQLite files under `data_dir`.

    On PostgreSQL every test starts from an empty schema, so the services' migrations run each time.
    """
    if request.param == "sqlite":
        yield None
        return
    url: str = request.getfixturevalue("pg_url")
    try:
        yield url
    finally:
        asyncio.run(_pg_admin(url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public"))

"""Fixtures shared by the integration tests of one service each.

A test module may define its own fixture of the same name (e.g. `live` with a database URL in
test_definitions_api.py, `tasks_url` with a clock in test_task_events.py); pytest prefers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import migrate
from services.common.brokers import ensure_topics
from services.common.db import make_engine
from services.common.kafka import EventProducer, create_topics, topic_table
from services.common.settings import Settings

# --- definitions service --------------------------------------------------------------------


@pytest.fixture()
def live(settings: Settings) -> Settings:
    asyncio.run(create_topics(settings))
    return settings


@pytest.fixture()
def api(live: Settings) -> Iterator[httpx.Client]:
    from tests.integration.test_definitions_api import serve

    with serve(live) as client:
        yield client


# --- tasks service (each module provides `tasks_url`, and may override `topics`) -------------


@pytest.fixture()
async def tasks_engine(database_url: str | None, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated tasks database: a SQLite file, or the PostgreSQL one."""
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}"
    await migrate.upgrade(url, "tasks")
    engine = make_engine(url)
    yield engine
    await engine.dispose()


@pytest.fixture()
async def topics(settings: Settings, database_url: str | None) -> Settings:
    """The session broker's topics for `settings`, on SQLite and on PostgreSQL."""
    settings = settings.model_copy(update={"database_url": database_url})
    await ensure_topics(settings.kafka_bootstrap, topic_table(settings))
    return settings


@pytest.fixture()
async def client(tasks_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tasks_url, timeout=30) as c:
        yield c


@pytest.fixture()
async def producer(topics: Settings) -> AsyncIterator[EventProducer]:
    p = EventProducer(topics, "test-router")
    await p.start()
    yield p
    await p.stop()

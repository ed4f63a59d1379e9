"""Each service's Alembic revisions build exactly the schema its ORM models describe.

When this fails after a model change, add a revision:
``python -m services.common.migrate revision <service> -m "what changed"``, then read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData, inspect

from services.common import migrate
from services.common.db import make_engine
from services.definitions.models import Base as DefinitionsBase
from services.tasks.models import Base as TasksBase

pytestmark = pytest.mark.integration
SERVICES: dict[str, MetaData] = {
    "definitions": DefinitionsBase.metadata,
    "tasks": TasksBase.metadata,
}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database; both services share it, as with one FLOWLINE_DATABASE_URL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'flowline.db'}"
    return str(request.getfixturevalue("database_url_postgres"))


@pytest.fixture()
def database_url_postgres(pg_url: str) -> Any:
    import asyncio

    from tests.conftest import _pg_admin

    yield pg_url
    asyncio.run(_pg_admin(pg_url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public"))


async def run(url: str, fn: Any) -> Any:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def diff(service: str) -> Any:
    def compare(conn: Connection) -> list[Any]:
        options = migrate.configure_options(SERVICES[service], service)
        context = MigrationContext.configure(conn, opts=options)
        return list(compare_metadata(context, SERVICES[service]))

    return compare


async def test_upgrade_creates_each_services_tables_and_matches_the_models(url: str) -> None:
    for service in SERVICES:
        await migrate.upgrade(url, service)
    tables = set(await run(url, lambda conn: inspect(conn).get_table_names()))
    for service, metadata in SERVICES.items():
        assert set(metadata.tables) <= tables
        assert migrate.version_table(service) in tables
        assert await run(url, diff(service)) == [], f"{service}: models and migrations differ"


async def test_upgrade_is_idempotent(url: str) -> None:
    for _ in range(2):
        for service in SERVICES:
            await migrate.upgrade(url, service)
    for service in SERVICES:
        assert await run(url, diff(service)) == []

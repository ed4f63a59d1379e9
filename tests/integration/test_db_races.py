"""Unique constraints turn races into 409s on both databases (asyncpg raises its own errors)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from schemas.graph import ProcessGraph
from services.common import migrate
from services.common.db import make_engine, make_sessionmaker
from services.common.errors import Conflict
from services.definitions.repository import Repository
from services.definitions.templates import load_template

pytestmark = pytest.mark.integration


@pytest.fixture()
async def repo(database_url: str | None, tmp_path: Path) -> AsyncIterator[Repository]:
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'definitions.db'}"
    await migrate.upgrade(url, "definitions")
    engine = make_engine(url)
    try:
        yield Repository(make_sessionmaker(engine), "t.definitions")
    finally:
        await engine.dispose()


async def race(*calls: Any) -> tuple[int, list[Conflict]]:
    """Run `calls` at once; every one either wins or is refused with a Conflict (409)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    unexpected = [r for r in results
                  if isinstance(r, BaseException) and not isinstance(r, Conflict)]
    assert not unexpected, unexpected
    conflicts = [r for r in results if isinstance(r, Conflict)]
    return len(results) - len(conflicts), conflicts


async def test_concurrent_creations_of_one_key_have_one_winner(repo: Repository) -> None:
    graph = ProcessGraph.model_validate(load_template("remanufacturing"))
    won, conflicts = await race(*(repo.create_draft("default", graph) for _ in range(8)))
    assert won == 1 and len(conflicts) == 7


async def test_concurrent_approvals_make_one_version(repo: Repository) -> None:
    graph = ProcessGraph.model_validate(load_template("remanufacturing"))
    await repo.create_draft("default", graph)
    won, conflicts = await race(*(repo.approve("default", graph.key) for _ in range(8)))
    assert won == 1 and len(conflicts) == 7
    assert (await repo.get_version("default", graph.key)).version == 1

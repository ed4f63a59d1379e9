"""`stall.awaiting`: where a suspended coroutine waits, for a stall that re-reading cannot heal."""

from __future__ import annotations

import asyncio

from services.router.stall import awaiting


async def test_awaiting_names_each_coroutine_down_to_the_one_that_waits() -> None:
    waiting, release = asyncio.Event(), asyncio.Event()

    async def deliver() -> None:
        waiting.set()
        await release.wait()

    async def handle_batch() -> None:
        await deliver()

    routing = handle_batch()
    task = asyncio.ensure_future(routing)
    await waiting.wait()
    where = awaiting(routing)
    assert where.startswith("handle_batch (") and " -> deliver (" in where
    assert "test_router_stall_diagnostics.py:" in where
    release.set()
    await task
    assert awaiting(None) == "(unknown)"

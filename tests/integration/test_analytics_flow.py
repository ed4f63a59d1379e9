"""Plant-manager analytics (`GET /v1/analytics/flow`) over real HTTP, a real broker and the DB.

The router is played by the test: it produces the instance events of three parts with known
times: one first-pass, one reworked, one still waiting at inspect.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from schemas.messages import InstanceEvent, ProcessRef
from schemas.topics import instance_event_type
from services.common.kafka import EventProducer
from tests.conftest import async_wait_for
from tests.integration.test_tasks_service import tasks_url  # noqa: F401  (a fixture)

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


async def emit(producer: EventProducer, instance: str, kind: str, minute: float,
               **fields: Any) -> None:
    ev = InstanceEvent(kind=kind, instance_id=instance,  # type: ignore[arg-type]
                       at=(T0 + timedelta(minutes=minute)).isoformat(),
                       process=ProcessRef(key="reman", version=1), **fields)
    await producer.send(producer.settings.instance_events_topic, instance,
                        instance_event_type(kind), ev.dump())


async def walk(producer: EventProducer, instance: str,
               steps: list[tuple[str, float, float]], end: float | None) -> None:
    """Enter and leave each (step, entered minute, exited minute); end the instance at `end`."""
    await emit(producer, instance, "started", 0, status="running")
    visits: dict[str, int] = {}
    for step, entered, exited in steps:
        visits[step] = visits.get(step, 0) + 1
        await emit(producer, instance, "step_entered", entered, step=step, visit=visits[step],
                   visits=dict(visits), step_type="rework" if step == "rework" else "task")
        if exited >= 0:
            await emit(producer, instance, "step_completed", exited, step=step,
                       visit=visits[step], outcome="pass")
    if end is not None:
        await emit(producer, instance, "completed", end, status="completed",
                   terminal_status="completed", visits=dict(visits))


async def test_first_pass_yield_flow_per_step_and_the_bottleneck(
        client: httpx.AsyncClient, producer: EventProducer) -> None:
    await walk(producer, "fp-1", [("inspect", 0, 10), ("ship", 10, 12)], end=12)
    await walk(producer, "rw-1", [("inspect", 0, 20), ("rework", 20, 50), ("inspect", 50, 60),
                                  ("ship", 60, 62)], end=62)
    await walk(producer, "open-1", [("inspect", 0, -1)], end=None)
    await walk(producer, "open-2", [("inspect", 5, -1)], end=None)

    async def settled() -> dict[str, Any] | None:
        r = await client.get("/v1/analytics/flow", params={"process": "reman"})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body if body["instances"] == 4 and body["first_pass_yield"]["ended"] == 2 \
            and sum(s["wip"] for s in body["steps"]) == 2 else None

    body = await async_wait_for(settled, within=30, what="the four parts in the read model")
    assert body["first_pass_yield"] == {"ended": 2, "first_pass": 1, "reworked": 1, "ratio": 0.5}
    steps = {s["step"]: s for s in body["steps"]}
    assert steps["inspect"]["visits"] == 5 and steps["inspect"]["wip"] == 2
    # exited inspect visits took 10, 20 and 10 minutes
    assert steps["inspect"]["mean_s"] == pytest.approx(40 * 60 / 3, rel=1e-3)
    assert steps["inspect"]["p90_s"] == 20 * 60
    assert steps["rework"] == {**steps["rework"], "visits": 1, "wip": 0, "mean_s": 1800.0}
    assert steps["ship"]["mean_s"] == 120.0
    assert body["bottlenecks"] == ["inspect"]
    assert steps["inspect"]["oldest_waiting_s"] > steps["inspect"]["queue_s"] / 2 > 0

    other = (await client.get("/v1/analytics/flow", params={"process": "other"})).json()
    assert other["instances"] == 0 and other["first_pass_yield"]["ratio"] is None
    bad = await client.get("/v1/analytics/flow", params={"since": "yesterday"})
    assert bad.status_code == 422 and "error" in bad.json()

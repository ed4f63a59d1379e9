"""Timer steps: the tasks service wakes them at their time, within a second, restarts or not.

The router is played by the test: it sends timer step commands and reads the completions the
tasks service produces. The schedule lives in SQL, so a service restarted before the wake
time still fires the timer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from services.common.envelopes import Decoded, decode
from services.common.kafka import EventProducer
from services.common.settings import Settings
from services.tasks.api import create_app
from services.tasks.config import AutomationSettings
from tests.conftest import async_wait_for
from tests.integration.test_tasks_service import command, new_instance, send_command, serve

pytestmark = pytest.mark.integration

AUTOMATION = AutomationSettings(scheduler_interval=0.1)


@pytest.fixture()
def tasks_url(topics: Settings) -> Iterator[str]:
    with serve(create_app(topics, automation=AUTOMATION)) as url:
        yield url


async def completions_of(settings: Settings, instance: str, within: float = 30,
                         at_least: int = 1, settle: float = 0.0) -> list[tuple[Decoded, int]]:
    """(event, record timestamp in ms) of the instance's completions, read from the start;
    after `at_least` arrived, keep reading `settle` seconds more (to see a duplicate)."""
    consumer = AIOKafkaConsumer(settings.completions_topic,
                                bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    found: list[tuple[Decoded, int]] = []
    await consumer.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=within)
        settle_until: datetime | None = None
        while datetime.now(UTC) < (settle_until or deadline):
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    if r.key == instance.encode():
                        found.append((decode(r.headers, r.key, r.value), r.timestamp))
            if len(found) >= at_least and settle_until is None:
                settle_until = datetime.now(UTC) + timedelta(seconds=settle)
    finally:
        await consumer.stop()
    assert len(found) >= at_least, f"{len(found)} completions of {instance} after {within}s"
    return found


def fired_within_a_second(event: Decoded, timestamp_ms: int, wake: datetime) -> None:
    sent = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    assert wake <= event.time < wake + timedelta(seconds=1), (event.time, wake)
    assert sent - wake < timedelta(seconds=1), (sent, wake)


async def test_timer_fires_at_its_wake_time(client: httpx.AsyncClient, producer: EventProducer,
                                            topics: Settings) -> None:
    inst = new_instance()
    wake = datetime.now(UTC) + timedelta(seconds=2)
    # The router's `wake_at` wins over the duration (which would be an hour here).
    await send_command(producer, command(inst, "cure", step_type="timer", role=None,
                                         timer="PT1H", wake_at=wake.isoformat()))
    tid = f"{inst}/cure/1"

    async def pending() -> dict | None:
        r = await client.get(f"/v1/timers/{tid}")
        return dict(r.json()) if r.status_code == 200 else None

    timer = await async_wait_for(pending, within=30, what="the timer row")
    assert (timer["status"], timer["wake_at"]) == ("pending", wake.isoformat())
    task = (await client.get(f"/v1/tasks/{tid}")).json()
    assert (task["executor"], task["status"]) == ("timer", "open")
    r = await client.post(f"/v1/tasks/{tid}/claim", json={"operator": "ann"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "task_automated"

    [(event, ts)] = await completions_of(topics, inst, settle=0.5)
    assert event.id == f"timer:{tid}"
    assert event.data == {"instance_id": inst, "step": "cure", "visit": 1, "outcome": "fired",
                          "equipment": "timer", "note": f"timer due {wake.isoformat()}",
                          "measurements": {}}
    fired_within_a_second(event, ts, wake)
    timer = (await client.get(f"/v1/timers/{tid}")).json()
    assert timer["status"] == "fired"
    task = (await client.get(f"/v1/tasks/{tid}")).json()
    assert (task["status"], task["outcome"]) == ("completed", "fired")


async def test_timer_fires_after_the_service_restarts_before_its_time(
    producer: EventProducer, topics: Settings
) -> None:
    inst = new_instance()
    entered = datetime.now(UTC)
    wake = entered + timedelta(seconds=8)
    # No wake_at: the service computes entered_at + the ISO-8601 duration itself.
    await send_command(producer, command(inst, "cure", step_type="timer", role=None,
                                         timer="PT8S", entered_at=entered.isoformat()))
    tid = f"{inst}/cure/1"
    with serve(create_app(topics, automation=AUTOMATION)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:

            async def scheduled() -> dict | None:
                r = await c.get(f"/v1/timers/{tid}")
                return dict(r.json()) if r.status_code == 200 else None

            timer = await async_wait_for(scheduled, within=30, what="the timer row")
            assert timer["wake_at"] == wake.isoformat()
    stopped = datetime.now(UTC)
    assert stopped < wake - timedelta(seconds=1), "the first service outlived the timer"

    with serve(create_app(topics, automation=AUTOMATION)) as url:
        [(event, ts)] = await completions_of(topics, inst, settle=1.0)
        assert event.id == f"timer:{tid}"
        assert (event.data["step"], event.data["outcome"]) == ("cure", "fired")
        fired_within_a_second(event, ts, wake)
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            assert (await c.get(f"/v1/timers/{tid}")).json()["status"] == "fired"
            assert (await c.get(f"/v1/tasks/{tid}")).json()["status"] == "completed"


async def test_timer_of_a_finished_step_never_fires(client: httpx.AsyncClient,
                                                    producer: EventProducer) -> None:
    inst = new_instance()
    wake = datetime.now(UTC) + timedelta(seconds=60)
    await send_command(producer, command(inst, "cure", step_type="timer", role=None,
                                         wake_at=wake.isoformat()))
    # The instance moved on (someone completed the step by hand), then a broken timer step.
    await send_command(producer, command(inst, "cure", 2, step_type="timer", role=None))
    tid = f"{inst}/cure/1"

    async def timers() -> list | None:
        r = await client.get("/v1/timers", params={"instance_id": inst})
        items = r.json()["items"]
        return items if items and items[0]["status"] == "cancelled" else None

    [timer] = await async_wait_for(timers, within=30, what="the first visit's timer retired")
    assert timer["timer_id"] == tid
    # A timer step without a duration cannot be scheduled: it is an incident on its task.
    broken = (await client.get(f"/v1/tasks/{inst}/cure/2")).json()
    assert "has no duration" in broken["incident"]
    r = await client.get("/v1/timers", params={"instance_id": inst, "status": "pending"})
    assert r.json()["total"] == 0

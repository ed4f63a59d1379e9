"""Task events and SLA breaches: the tasks service against a real broker and SQL, over HTTP.

The service runs on a `FixedClock` the tests move, so due times pass when a test says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from schemas.topics import TASK_EVENT_V1
from services.common.brokers import ensure_topics
from services.common.envelopes import Decoded, decode
from services.common.kafka import EventProducer, topic_table
from services.common.settings import Settings
from services.tasks.api import create_app
from services.tasks.clock import FixedClock
from tests.conftest import async_wait_for
from tests.integration.test_tasks_service import (
    command,
    new_instance,
    send_command,
    send_event,
    serve,
)

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)


@pytest.fixture()
async def topics(settings: Settings, database_url: str | None) -> Settings:
    settings = settings.model_copy(update={"database_url": database_url,
                                           "sla_sweep_interval": 0.05})
    await ensure_topics(settings.kafka_bootstrap, topic_table(settings))
    return settings


@pytest.fixture()
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture()
def tasks_url(topics: Settings, clock: FixedClock) -> Iterator[str]:
    with serve(create_app(topics, clock)) as url:
        yield url


async def task_events(settings: Settings, instance: str,
                      until: Callable[[list[Decoded]], bool], within: float = 30) -> list[Decoded]:
    """The task events of `instance`, read from the start of the topic until `until` holds."""
    consumer = AIOKafkaConsumer(settings.task_events_topic,
                                bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    events: list[Decoded] = []
    await consumer.start()
    try:
        async with asyncio.timeout(within):
            async for record in consumer:
                if record.key != instance.encode():
                    continue
                events.append(decode(record.headers, record.key, record.value))
                if until(events):
                    return events
    except TimeoutError:
        seen = [(e.id, e.data.get("kind")) for e in events]
        raise AssertionError(f"task events of {instance} after {within}s: {seen}") from None
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


def has(*event_ids: str) -> Callable[[list[Decoded]], bool]:
    return lambda events: set(event_ids) <= {e.id for e in events}


def by_id(events: list[Decoded]) -> dict[str, dict]:
    return {e.id: e.data for e in events}


async def wait_task(client: httpx.AsyncClient, task_id: str,
                    ready: Callable[[dict], bool] = lambda _t: True) -> dict:
    async def current() -> dict | None:
        r = await client.get(f"/v1/tasks/{task_id}")
        return dict(r.json()) if r.status_code == 200 and ready(r.json()) else None

    return dict(await async_wait_for(current, within=30, what=f"task {task_id}"))


async def test_overdue_task_is_breached_and_escalated(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings
) -> None:
    inst = new_instance()
    due = (T0 - timedelta(minutes=5)).isoformat()
    await send_command(producer, command(inst, "inspect", role="inspector", due_at=due,
                                         escalate_to="supervisor"))
    tid = f"{inst}/inspect/1"
    events = await task_events(topics, inst, has(f"{tid}/created", f"{tid}/breached",
                                                 f"{tid}/escalated/1"))
    assert {e.type for e in events} == {TASK_EVENT_V1}
    data = by_id(events)
    assert data[f"{tid}/breached"]["kind"] == "breached"
    assert data[f"{tid}/breached"]["role"] == "inspector"
    assert data[f"{tid}/breached"]["at"] == T0.isoformat()  # the service's clock, not the wall's
    assert data[f"{tid}/escalated/1"]["role"] == "supervisor"
    assert [e.id for e in events].index(f"{tid}/breached") < \
        [e.id for e in events].index(f"{tid}/escalated/1")

    task = await wait_task(client, tid)
    assert (task["role"], task["original_role"], task["status"]) == ("supervisor", "inspector",
                                                                      "open")
    assert task["breached_at"] == T0.isoformat()
    r = await client.get("/v1/tasks", params={"role": "supervisor", "instance_id": inst})
    assert [t["task_id"] for t in r.json()["items"]] == [tid]
    assert "flowline_tasks_sla_breaches_total" in (await client.get("/metrics")).text


async def test_due_time_passes_when_the_clock_moves(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings, clock: FixedClock
) -> None:
    inst = new_instance()
    due = (T0 + timedelta(hours=1)).isoformat()
    await send_command(producer, command(inst, "repair", due_at=due, escalate_to="lead"))
    await send_command(producer, command(inst, "clean", due_at=due))  # nowhere to escalate to
    repair, clean = f"{inst}/repair/1", f"{inst}/clean/1"
    await task_events(topics, inst, has(f"{repair}/created", f"{clean}/created"))
    r = await client.post(f"/v1/tasks/{repair}/claim", json={"operator": "ann"})
    assert r.status_code == 200 and r.json()["breached_at"] is None

    later = clock.advance(timedelta(hours=2))
    events = await task_events(topics, inst, has(f"{repair}/escalated/1", f"{clean}/breached"))
    data = by_id(events)
    assert data[f"{repair}/breached"]["operator"] == "ann"  # breached while ann held it
    assert data[f"{repair}/breached"]["at"] == later.isoformat()
    assert data[f"{clean}/breached"]["role"] == "inspector"
    assert f"{clean}/escalated/1" not in data

    task = await wait_task(client, repair)
    assert (task["role"], task["status"], task["assignee"]) == ("lead", "open", None)
    task = await wait_task(client, clean)
    assert (task["role"], task["original_role"], task["breached_at"]) == (
        "inspector", None, later.isoformat())


async def test_claim_release_complete_announce_themselves(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings
) -> None:
    inst = new_instance()
    await send_command(producer, command(inst, "inspect", step_type="decision",
                                         outcomes=["pass", "fail"]))
    tid = f"{inst}/inspect/1"
    await task_events(topics, inst, has(f"{tid}/created"))
    url = f"/v1/tasks/{tid}"
    assert (await client.post(f"{url}/claim", json={"operator": "ann"})).status_code == 200
    assert (await client.post(f"{url}/claim", json={"operator": "ann"})).status_code == 200
    assert (await client.post(f"{url}/release", json={"operator": "ann"})).status_code == 200
    assert (await client.post(f"{url}/claim", json={"operator": "bo"})).status_code == 200
    r = await client.post(f"{url}/complete", json={"operator": "bo", "outcome": "pass"})
    assert r.status_code == 202, r.text

    events = await task_events(topics, inst, has(f"{tid}/completed"))
    assert [(e.id, e.data["kind"], e.data.get("operator")) for e in events] == [
        (f"{tid}/created", "created", None),
        (f"{tid}/claimed/1", "claimed", "ann"),  # the second claim by ann changed nothing
        (f"{tid}/released/1", "released", "ann"),
        (f"{tid}/claimed/2", "claimed", "bo"),
        (f"{tid}/completed", "completed", "bo"),
    ]
    done = events[-1].data
    assert (done["outcome"], done["instance_id"], done["step"], done["visit"]) == (
        "pass", inst, "inspect", 1)
    assert all(e.source and e.type == TASK_EVENT_V1 for e in events)


async def test_redelivered_command_is_created_once(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings
) -> None:
    inst = new_instance()
    cmd = command(inst, "inspect")
    await send_command(producer, cmd)
    await send_command(producer, cmd)  # a redelivery: a new CloudEvent id, the same command
    await send_command(producer, command(inst, "marker"))  # same key: announced after those
    events = await task_events(topics, inst, has(f"{inst}/marker/1/created"))
    assert [e.id for e in events] == [f"{inst}/inspect/1/created", f"{inst}/marker/1/created"]
    assert events[0].data["role"] == "inspector"


async def test_cancelled_tasks_are_announced_once(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings
) -> None:
    inst = new_instance()
    await send_command(producer, command(inst, "inspect", visit=1))
    await send_command(producer, command(inst, "inspect", visit=2))  # supersedes visit 1
    await send_command(producer, command(inst, "ship", visit=1))
    await send_event(producer, "cancelled", inst, status="cancelled",
                     terminal_status="cancelled")  # the instance ends: ship is not needed
    await send_event(producer, "cancelled", inst, status="cancelled")  # redelivered
    first, second, ship = (f"{inst}/inspect/1", f"{inst}/inspect/2", f"{inst}/ship/1")
    events = by_id(await task_events(topics, inst, has(f"{first}/cancelled",
                                                       f"{second}/cancelled",
                                                       f"{ship}/cancelled")))
    assert events[f"{first}/cancelled"]["outcome"] == "superseded by a later visit"
    assert events[f"{ship}/cancelled"]["outcome"] == "instance ended"
    assert sum(1 for e in events if e.endswith("/cancelled")) == 3
    assert (await wait_task(client, ship, lambda t: t["status"] == "cancelled"))["status"] \
        == "cancelled"

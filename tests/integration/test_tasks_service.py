"""The tasks service against a real broker and SQLite or PostgreSQL, over real HTTP.

The router is played by the tests: they produce step commands and instance events themselves.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from schemas.messages import InstanceEvent, ProcessRef, StepCommand, Subject
from schemas.topics import COMMAND_V1, COMPLETED_V1, DEAD_LETTER_V1, instance_event_type
from services.common.envelopes import decode
from services.common.kafka import EventProducer
from services.common.settings import Settings
from services.tasks.api import create_app
from services.tasks.service import consumer_group
from tests.conftest import async_wait_for, committed_offsets
from tests.conftest import serve_app as serve

pytestmark = pytest.mark.integration


@pytest.fixture()
def tasks_url(topics: Settings) -> Iterator[str]:
    with serve(create_app(topics)) as url:
        yield url


def now() -> str:
    return datetime.now(UTC).isoformat()


def command(instance: str, step: str, visit: int = 1, **fields: Any) -> StepCommand:
    base: dict[str, Any] = {
        "command_id": f"{instance}/{step}/{visit}", "instance_id": instance, "tenant": "default",
        "process": ProcessRef(key="reman", version=1), "step": step, "step_type": "task",
        "visit": visit, "visits": {step: visit}, "role": "inspector", "reason": "pass",
        "entered_at": now(), "subject": Subject(type="part", id="SN-1"),
    }
    return StepCommand(**{**base, **fields})


async def send_command(producer: EventProducer, cmd: StepCommand) -> None:
    await producer.send(producer.settings.commands_topic, cmd.instance_id, COMMAND_V1, cmd.dump())


async def send_event(producer: EventProducer, kind: str, instance: str, **fields: Any) -> None:
    ev = InstanceEvent(kind=kind, instance_id=instance, at=now(), **fields)  # type: ignore[arg-type]
    await producer.send(producer.settings.instance_events_topic, instance,
                        instance_event_type(kind), ev.dump())


async def tasks_of(client: httpx.AsyncClient, instance: str, **params: Any) -> list[dict]:
    r = await client.get("/v1/tasks", params={"instance_id": instance, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def wait_tasks(client: httpx.AsyncClient, instance: str, n: int, **params: Any) -> list:
    async def enough() -> list | None:
        items = await tasks_of(client, instance, **params)
        return items if len(items) >= n else None
    return list(await async_wait_for(enough, within=30, what=f"{n} tasks of {instance}"))


async def consume_until(settings: Settings, topic: str,
                        match: Callable[[ConsumerRecord], bool]) -> ConsumerRecord:
    """Read `topic` from the start (no group) until a record matches."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            async for record in consumer:
                if match(record):
                    return record
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


def new_instance() -> str:
    return f"i-{uuid.uuid4().hex[:8]}"


async def test_command_becomes_one_task_even_when_redelivered(
    client: httpx.AsyncClient, producer: EventProducer
) -> None:
    inst = new_instance()
    due = (datetime.now(UTC) + timedelta(hours=4)).isoformat()
    cmd = command(inst, "inspect", step_type="decision", outcomes=["pass", "fail"], due_at=due,
                  instructions="check the bore", priority="high")
    await send_command(producer, cmd)
    await send_command(producer, cmd)  # a redelivery: a new CloudEvent id, the same command
    await send_command(producer, command(inst, "split", step_type="parallel"))  # not an inbox step
    await send_command(producer, command(inst, "marker", 1))  # same key: processed after those
    await wait_tasks(client, inst, 2)
    items = await tasks_of(client, inst)
    assert sorted(t["step"] for t in items) == ["inspect", "marker"]
    task = next(t for t in items if t["step"] == "inspect")
    assert task["task_id"] == f"{inst}/inspect/1"
    assert (task["status"], task["priority"]) == ("open", "high")
    assert task["outcomes"] == ["pass", "fail"]
    assert task["due_at"] is not None and task["instructions"] == "check the bore"
    r = await client.get(f"/v1/tasks/{inst}/inspect/1")
    assert r.status_code == 200 and r.json()["step_type"] == "decision"
    r = await client.get("/v1/tasks", params={"role": "inspector", "status": "open"})
    assert r.json()["total"] >= 2
    r = await client.get(f"/v1/tasks/{inst}/nope/1")
    assert r.status_code == 404 and r.json()["error"]["code"] == "task_not_found"


async def test_claim_race_has_one_winner(client: httpx.AsyncClient,
                                         producer: EventProducer) -> None:
    inst = new_instance()
    await send_command(producer, command(inst, "repair"))
    [task] = await wait_tasks(client, inst, 1)
    url = f"/v1/tasks/{task['task_id']}"
    answers = await asyncio.gather(
        client.post(f"{url}/claim", json={"operator": "alice"}),
        client.post(f"{url}/claim", json={"operator": "bob"}),
    )
    assert sorted(r.status_code for r in answers) == [200, 409]
    winner = next(r for r in answers if r.status_code == 200).json()["assignee"]
    loser = "bob" if winner == "alice" else "alice"
    refused = next(r for r in answers if r.status_code == 409)
    assert refused.json()["error"]["code"] == "task_claimed"
    r = await client.post(f"{url}/release", json={"operator": loser})
    assert r.status_code == 409
    r = await client.post(f"{url}/release", json={"operator": winner})
    assert r.status_code == 200 and (r.json()["status"], r.json()["assignee"]) == ("open", None)
    r = await client.post(f"{url}/claim", json={"operator": loser})
    assert r.status_code == 200 and r.json()["assignee"] == loser
    r = await client.post(f"{url}/claim", json={})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


async def test_complete_publishes_a_step_completion(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings
) -> None:
    inst = new_instance()
    await send_command(producer, command(inst, "inspect", 2, step_type="decision",
                                         outcomes=["pass", "fail", "scrap"]))
    [task] = await wait_tasks(client, inst, 1)
    url = f"/v1/tasks/{task['task_id']}"
    r = await client.post(f"{url}/complete", json={"operator": "carol"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "outcome_required"
    r = await client.post(f"{url}/complete", json={"operator": "carol", "outcome": "maybe"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_outcome"
    assert (await client.post(f"{url}/claim", json={"operator": "dave"})).status_code == 200
    r = await client.post(f"{url}/complete", json={"operator": "carol", "outcome": "pass"})
    assert r.status_code == 409  # dave holds it
    r = await client.post(f"{url}/complete", json={
        "operator": "dave", "outcome": "fail", "measurements": {"bore_mm": 10.07}})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "completed"
    assert r.json()["event_id"] == f"{inst}/inspect/2/complete"

    record = await consume_until(topics, topics.completions_topic,
                                 lambda rec: rec.key == inst.encode())
    event = decode(record.headers, record.key, record.value)
    assert (event.id, event.type) == (f"{inst}/inspect/2/complete", COMPLETED_V1)
    assert event.data == {"instance_id": inst, "step": "inspect", "visit": 2, "outcome": "fail",
                          "measurements": {"bore_mm": 10.07}, "operator": "dave"}
    r = await client.post(f"{url}/complete", json={"operator": "dave", "outcome": "fail"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "task_closed"
    assert (await client.get(url)).json()["outcome"] == "fail"


async def test_revisit_by_a_different_operator(client: httpx.AsyncClient,
                                               producer: EventProducer) -> None:
    inst = new_instance()
    await send_command(producer, command(inst, "rework", 2, step_type="rework",
                                         revisit_assignment="different",
                                         previous_operators=["erin"]))
    [task] = await wait_tasks(client, inst, 1)
    url = f"/v1/tasks/{task['task_id']}"
    r = await client.post(f"{url}/claim", json={"operator": "erin"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "revisit_different_operator"
    r = await client.post(f"{url}/complete", json={"operator": "erin"})
    assert r.status_code == 409
    assert (await client.post(f"{url}/complete", json={"operator": "frank"})).status_code == 202


async def test_revisit_by_the_same_operator_is_offered_to_them_first(
        client: httpx.AsyncClient, producer: EventProducer) -> None:
    inst = new_instance()
    await send_command(producer, command(inst, "rework", 2, step_type="rework",
                                         revisit_assignment="same",
                                         previous_operators=["bob", "erin"]))
    [task] = await wait_tasks(client, inst, 1)
    assert (task["status"], task["assignee"]) == ("open", "erin")  # the last one
    mine = await client.get("/v1/tasks", params={"assignee": "erin", "instance_id": inst})
    assert [t["task_id"] for t in mine.json()["items"]] == [task["task_id"]]
    url = f"/v1/tasks/{task['task_id']}"
    for take in ("claim", "complete"):  # nobody else while it is offered
        r = await client.post(f"{url}/{take}", json={"operator": "frank"})
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "revisit_same_operator"
        assert r.json()["error"]["details"]["offered_to"] == "erin"
    assert (await client.post(f"{url}/claim", json={"operator": "erin"})).status_code == 200
    assert (await client.post(f"{url}/release", json={"operator": "erin"})).status_code == 200
    # Released: the offer is over, anyone of the role may take it.
    r = await client.post(f"{url}/claim", json={"operator": "frank"})
    assert r.status_code == 200, r.text
    assert (await client.get(url)).json()["assignee"] == "frank"


async def test_a_newer_visit_retires_the_older_task(client: httpx.AsyncClient,
                                                    producer: EventProducer) -> None:
    inst = new_instance()
    await send_command(producer, command(inst, "inspect", 1))
    await send_command(producer, command(inst, "inspect", 2))

    async def settled() -> dict[int, str] | None:
        items = {t["visit"]: t["status"] for t in await tasks_of(client, inst)}
        return items if len(items) == 2 else None
    assert await async_wait_for(settled, what="both visits") == {1: "cancelled", 2: "open"}


async def test_malformed_command_is_dead_lettered_and_consumption_goes_on(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings
) -> None:
    inst = new_instance()
    await producer.send_raw(topics.commands_topic, inst.encode(), b"{not json", [])
    await producer.send(topics.commands_topic, inst, COMMAND_V1, {"command_id": "x"})
    await producer.send(topics.commands_topic, inst, "flowline.step.command.v9", {})
    await send_command(producer, command(inst, "after"))
    await wait_tasks(client, inst, 1)
    letters: list[dict[str, Any]] = []

    def collect(rec: ConsumerRecord) -> bool:
        if rec.key == inst.encode():
            event = decode(rec.headers, rec.key, rec.value)
            assert event.type == DEAD_LETTER_V1
            letters.append(event.data)
        return len(letters) == 3

    await consume_until(topics, topics.dead_letters_topic, collect)
    assert [d["reason"] for d in letters] == ["malformed", "malformed", "unsupported_type"]
    assert letters[0]["value"] == "{not json" and letters[0]["topic"] == topics.commands_topic
    assert "StepCommand" in letters[1]["detail"] and letters[1]["offset"] == 1


async def committed(settings: Settings, topic: str) -> int:
    """The tasks group's committed offsets on `topic`, summed over its partitions."""
    offsets = await committed_offsets(settings.kafka_bootstrap, consumer_group(settings), topic,
                                      settings.partitions)
    return sum(offsets.values())


async def test_the_last_batch_is_committed_though_no_batch_follows(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings
) -> None:
    # A batch's commit runs while the next batch is applied: it must happen without one too.
    instances = [new_instance() for _ in range(3)]
    for inst in instances:
        await send_command(producer, command(inst, "inspect"))
    for inst in instances:
        await wait_tasks(client, inst, 1)

    async def all_committed() -> bool:
        return await committed(topics, topics.commands_topic) == len(instances)

    await async_wait_for(all_committed, within=30, what="the commands' offsets committed")


async def test_journey_read_model(client: httpx.AsyncClient, producer: EventProducer) -> None:
    inst = new_instance()
    r = await client.get(f"/v1/instances/{inst}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "instance_not_found"
    ref = ProcessRef(key="reman", version=3)
    await send_command(producer, command(inst, "inspect", 2))  # left open: ending retires it
    await wait_tasks(client, inst, 1)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("started", {"process": ref, "subject": Subject(type="part", id="SN-9"),
                     "work_order": "WO-7", "status": "running"}),
        ("step_entered", {"step": "start", "visit": 1, "visits": {"start": 1}}),
        ("step_entered", {"step": "inspect", "visit": 1, "visits": {"start": 1, "inspect": 1}}),
        ("step_completed", {"step": "inspect", "visit": 1, "outcome": "fail", "operator": "ann",
                            "measurements": {"bore_mm": 10.2}}),
        ("step_entered", {"step": "rework", "visit": 1}),
        ("held", {"reason": "no parts", "status": "on_hold"}),
    ]
    for kind, fields in steps:
        await send_event(producer, kind, inst, **fields)

    async def held() -> dict | None:
        r = await client.get(f"/v1/instances/{inst}")
        return r.json() if r.status_code == 200 and r.json()["status"] == "on_hold" else None
    view = await async_wait_for(held, what="the instance on hold")
    assert view["active_steps"] == ["rework"] and view["work_order"] == "WO-7"
    assert view["process"] == {"key": "reman", "version": 3}
    assert [(j["step"], j["visit"], j["outcome"]) for j in view["journey"]] == [
        ("start", 1, None), ("inspect", 1, "fail"), ("rework", 1, None)]
    assert view["journey"][0]["exited_at"] is not None  # the start marker is left at once
    assert view["journey"][2]["exited_at"] is None

    await send_event(producer, "step_entered", inst, step="rework", visit=1)  # redelivered
    for kind, fields in [
        ("resumed", {"status": "running"}),
        ("step_completed", {"step": "rework", "visit": 1, "operator": "bo"}),
        ("escalated", {"step": "rework", "to_step": "scrap", "visits": {"rework": 1}}),
        ("step_entered", {"step": "scrapped", "visit": 1,
                          "visits": {"start": 1, "inspect": 1, "rework": 1, "scrapped": 1}}),
        ("completed", {"step": "scrapped", "terminal_status": "scrapped", "status": "completed"}),
    ]:
        await send_event(producer, kind, inst, **fields)

    async def done() -> dict | None:
        r = await client.get(f"/v1/instances/{inst}")
        return r.json() if r.json().get("status") == "completed" else None
    view = await async_wait_for(done, what="the instance completed")
    assert (view["terminal_status"], view["active_steps"]) == ("scrapped", [])
    assert view["visits"] == {"start": 1, "inspect": 1, "rework": 1, "scrapped": 1}
    assert [j["step"] for j in view["journey"]] == ["start", "inspect", "rework", "scrapped"]
    assert all(j["exited_at"] for j in view["journey"])
    assert view["journey"][1]["measurements"] == {"bore_mm": 10.2}
    assert [t["status"] for t in await tasks_of(client, inst)] == ["cancelled"]

    r = await client.get("/v1/instances", params={"status": "completed", "process": "reman"})
    assert inst in [i["instance_id"] for i in r.json()["items"]]
    wip = (await client.get("/v1/analytics/wip")).json()
    assert wip["instances"]["completed"] >= 1 and wip["terminal"]["scrapped"] >= 1
    metrics = await client.get("/metrics")
    assert "flowline_tasks_records_total" in metrics.text
    assert (await client.get("/healthz")).json()["status"] == "ok"

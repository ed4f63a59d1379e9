"""The gateway against a real broker and a real tasks service, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from schemas.messages import ProcessRef, StepCommand
from schemas.topics import (
    CANCEL_V1,
    COMMAND_V1,
    COMPLETED_V1,
    HOLD_V1,
    RESUME_V1,
    START_V1,
    instance_event_type,
)
from services.common.brokers import ensure_topics
from services.common.envelopes import Decoded, decode
from services.common.kafka import EventProducer, topic_table
from services.common.settings import Settings
from services.definitions.api import create_app as create_definitions
from services.gateway.api import create_app as create_gateway
from services.tasks.api import create_app as create_tasks
from tests.conftest import async_wait_for, free_port
from tests.conftest import serve_app as serve
from tests.unit.flows import World
from tests.unit.graphs import compiled
from tests.unit.test_routing_migration import par

pytestmark = pytest.mark.integration


@pytest.fixture()
async def topics(settings: Settings) -> Settings:
    await ensure_topics(settings.kafka_bootstrap, topic_table(settings))
    # Nothing listens on the definitions port: that peer is down for these tests.
    return settings.model_copy(update={"definitions_url": f"http://127.0.0.1:{free_port()}"})


@pytest.fixture()
def tasks_url(topics: Settings) -> Iterator[str]:
    with serve(create_tasks(topics)) as url:
        yield url


@pytest.fixture()
async def gateway(topics: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway alone (its tasks peer is down)."""
    down = topics.model_copy(update={"tasks_url": f"http://127.0.0.1:{free_port()}"})
    with serve(create_gateway(down)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client


@pytest.fixture()
async def stack(topics: Settings, tasks_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in front of a running tasks service."""
    with serve(create_gateway(topics.model_copy(update={"tasks_url": tasks_url}))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client


async def consume_until(settings: Settings, topic: str,
                        match: Callable[[Decoded], bool]) -> tuple[ConsumerRecord, Decoded]:
    """Read `topic` from the start (no group) until a decoded event matches."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            async for record in consumer:
                event = decode(record.headers, record.key, record.value)
                if match(event):
                    return record, event
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


async def test_start_instance_produces_a_start_request(gateway: httpx.AsyncClient,
                                                        topics: Settings) -> None:
    r = await gateway.post("/v1/instances", headers={"X-Flowline-Tenant": "acme"}, json={
        "process": "reman", "subject": {"type": "part", "id": "SN-1"}, "work_order": "WO-1",
        "priority": "high", "context": {"line": 3}})
    assert r.status_code == 202, r.text
    instance_id = r.json()["instance_id"]
    record, event = await consume_until(topics, topics.requests_topic,
                                        lambda e: e.data.get("instance_id") == instance_id)
    assert record.key == instance_id.encode() and event.type == START_V1
    assert event.data == {"instance_id": instance_id, "tenant": "acme", "process": "reman",
                          "subject": {"type": "part", "id": "SN-1"}, "work_order": "WO-1",
                          "priority": "high", "context": {"line": 3}}

    r = await gateway.post("/v1/instances", json={
        "process": "reman", "version": 2, "instance_id": "part-42",
        "subject": {"type": "part", "id": "SN-42"}})
    assert r.status_code == 202 and r.json()["instance_id"] == "part-42"
    _, event = await consume_until(topics, topics.requests_topic,
                                   lambda e: e.data.get("instance_id") == "part-42")
    assert (event.data["tenant"], event.data["version"]) == ("default", 2)


async def test_completions_and_control_are_produced(gateway: httpx.AsyncClient,
                                                    topics: Settings) -> None:
    r = await gateway.post("/v1/instances/part-7/completions", json={
        "step": "inspect", "visit": 2, "outcome": "pass", "measurements": {"bore_mm": 10.01},
        "operator": "stand-3", "event_id": "stand-3/0001"})
    assert r.status_code == 202
    assert r.json() == {"instance_id": "part-7", "event_id": "stand-3/0001"}
    record, event = await consume_until(topics, topics.completions_topic,
                                        lambda e: e.id == "stand-3/0001")
    assert record.key == b"part-7" and event.type == COMPLETED_V1
    assert event.data == {"instance_id": "part-7", "step": "inspect", "visit": 2,
                          "outcome": "pass", "measurements": {"bore_mm": 10.01},
                          "operator": "stand-3"}

    r = await gateway.post("/v1/instances/part-7/hold", json={"reason": "no parts"})
    assert r.status_code == 202 and r.json()["action"] == "hold"
    hold_id = r.json()["event_id"]
    _, event = await consume_until(topics, topics.requests_topic, lambda e: e.id == hold_id)
    assert event.type == HOLD_V1
    assert event.data == {"instance_id": "part-7", "action": "hold", "reason": "no parts"}
    r = await gateway.post("/v1/instances/part-7/cancel")  # no body at all is fine
    assert r.status_code == 202
    cancel_id = r.json()["event_id"]
    _, event = await consume_until(topics, topics.requests_topic, lambda e: e.id == cancel_id)
    assert event.type == CANCEL_V1


async def test_resume_with_drop_held_is_produced_and_without_it_reads_as_before(
        gateway: httpx.AsyncClient, topics: Settings) -> None:
    r = await gateway.post("/v1/instances/part-8/resume",
                           json={"drop_held": True, "reason": "b is covered", "operator": "op-2"})
    assert r.status_code == 202 and r.json()["action"] == "resume"
    dropping = r.json()["event_id"]
    _, event = await consume_until(topics, topics.requests_topic, lambda e: e.id == dropping)
    assert event.type == RESUME_V1
    assert event.data == {"instance_id": "part-8", "action": "resume", "reason": "b is covered",
                          "operator": "op-2", "drop_held": True}
    r = await gateway.post("/v1/instances/part-8/resume")
    plain = r.json()["event_id"]
    _, event = await consume_until(topics, topics.requests_topic, lambda e: e.id == plain)
    assert event.data == {"instance_id": "part-8", "action": "resume"}


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/instances", {}),
    ("/v1/instances", {"process": "reman", "subject": {"type": "part"}}),
    ("/v1/instances", {"process": "", "subject": {"type": "part", "id": "1"}}),
    ("/v1/instances", {"process": "reman", "subject": {"type": "p", "id": "1"}, "version": 0}),
    ("/v1/instances", {"process": "reman", "subject": {"type": "p", "id": "1"}, "colour": 1}),
    ("/v1/instances", {"process": "reman", "subject": {"type": "p", "id": "1"},
                       "priority": "asap"}),
    ("/v1/instances", [1, 2]),
    ("/v1/instances/x/completions", {"outcome": "pass"}),
    ("/v1/instances/x/completions", {"step": "s", "visit": 0}),
    ("/v1/instances/x/hold", {"reason": 5}),
    ("/v1/instances/x/hold", {"drop_held": True}),  # a resume option only
    ("/v1/instances/x/resume", {"drop_held": "maybe"}),
    ("/v1/instances/x/resume", {"drop_held": [True]}),
])
async def test_bad_bodies_are_422_json(gateway: httpx.AsyncClient, path: str, body: Any) -> None:
    r = await gateway.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request" and r.json()["error"]["details"]


async def test_not_json_is_422(gateway: httpx.AsyncClient) -> None:
    r = await gateway.post("/v1/instances", content=b"{nope",
                           headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/instances/x/completions", b'{"step": "s", "measurements": {"torque": NaN}}'),
    ("/v1/instances", b'{"process": "p", "context": {"limit": Infinity}}'),
    ("/v1/instances/x/hold", b'{"reason": "r", "x": [-Infinity]}'),
    ("/v1/instances/x/completions", b'{"step": "s", "measurements": {"torque": 1e400}}'),
])
async def test_nan_and_infinity_are_not_json_and_422(gateway: httpx.AsyncClient, path: str,
                                                     body: bytes) -> None:
    """Python's json reads them; JSON has no such numbers, and a response carrying one fails."""
    r = await gateway.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"][0]["type"] == "json_invalid"
    assert "not a JSON number" in error["details"][0]["msg"] \
        or "too large for a JSON number" in error["details"][0]["msg"], error


async def test_a_peer_that_is_down_is_503(gateway: httpx.AsyncClient) -> None:
    for path in ("/v1/processes", "/v1/tasks", "/v1/instances/x"):
        r = await gateway.get(path)
        assert r.status_code == 503, path
        assert r.json()["error"]["code"] == "unavailable"
    health = (await gateway.get("/healthz")).json()
    assert health["peers"] == {"definitions": "down", "tasks": "down"}
    assert health["status"] == "degraded"


async def test_page_and_metrics(gateway: httpx.AsyncClient) -> None:
    r = await gateway.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<title>Flowline</title>" in r.text and "/v1/analytics/wip" in r.text
    metrics = await gateway.get("/metrics")
    assert metrics.status_code == 200 and "flowline_gateway_proxied_total" in metrics.text


async def test_tasks_pass_through(stack: httpx.AsyncClient, topics: Settings) -> None:
    r = await stack.get("/v1/tasks/nope/inspect/1")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "task_not_found" and "nope" in r.json()["error"]["message"]
    r = await stack.get("/v1/instances/unknown")
    assert r.status_code == 404 and r.json()["error"]["code"] == "instance_not_found"
    assert (await stack.get("/healthz")).json()["peers"]["tasks"] == "ok"

    # An inbox round trip through the gateway: the router's command in, a completion out.
    producer = EventProducer(topics, "test-router")
    await producer.start()
    try:
        cmd = StepCommand(
            command_id="gw-1/inspect/1", instance_id="gw-1", tenant="default",
            process=ProcessRef(key="reman", version=1), step="inspect", step_type="decision",
            visit=1, visits={"inspect": 1}, role="inspector", outcomes=["pass", "fail"],
            reason="started", entered_at=datetime.now(UTC).isoformat())
        await producer.send(topics.commands_topic, "gw-1", COMMAND_V1, cmd.dump())
    finally:
        await producer.stop()

    async def inbox() -> list:
        r = await stack.get("/v1/tasks", params={"role": "inspector", "status": "open"})
        return list(r.json()["items"])
    [task] = await async_wait_for(inbox, what="the task in the inbox")
    r = await stack.post(f"/v1/tasks/{task['task_id']}/claim", json={"operator": "ann"})
    assert r.status_code == 200 and r.json()["status"] == "claimed"
    r = await stack.post(f"/v1/tasks/{task['task_id']}/complete", json={"operator": "ann"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "outcome_required"
    r = await stack.post(f"/v1/tasks/{task['task_id']}/complete",
                         json={"operator": "ann", "outcome": "pass"})
    assert r.status_code == 202
    _, event = await consume_until(topics, topics.completions_topic,
                                   lambda e: e.id == "gw-1/inspect/1/complete")
    assert event.data["outcome"] == "pass" and event.data["operator"] == "ann"
    wip = await stack.get("/v1/analytics/wip")
    assert wip.status_code == 200 and "steps" in wip.json()


@pytest.fixture()
async def full(topics: Settings, tasks_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in front of running definitions and tasks services."""
    with serve(create_definitions(topics)) as definitions_url, \
            serve(create_gateway(topics.model_copy(update={
                "tasks_url": tasks_url, "definitions_url": definitions_url}))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client


async def test_a_dry_run_inside_a_parallel_block_checks_the_block(
        full: httpx.AsyncClient, topics: Settings) -> None:
    """v2 renames the join; the active steps a and b exist in v2, so only the parallel state
    (folded by the tasks service from the router's events) shows that the move would fail."""
    for graph in (par(), par(join="merge")):
        assert (await full.post("/v1/processes", json=graph)).status_code == 201
        assert (await full.post("/v1/processes/par/approve")).status_code == 200
    w = World(compiled(par()))  # the routing core, as the router runs it, for instance p1
    producer = EventProducer(topics, "test-router")
    await producer.start()
    try:
        for ev in w.start("par").events:
            await producer.send(topics.instance_events_topic, ev.instance_id,
                                instance_event_type(ev.kind), ev.dump())
    finally:
        await producer.stop()

    async def folded() -> dict[str, Any] | None:
        r = await full.get("/v1/instances/p1")
        return r.json() if r.status_code == 200 and r.json().get("parallel") else None

    instance = await async_wait_for(folded)
    assert instance["active_steps"] == ["a", "b"]
    assert set(instance["parallel"]["lanes"]) == {"a", "b"}
    r = await full.post("/v1/instances/p1/migrate", json={"to_version": 2, "dry_run": True})
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert plan["ok"] is False
    assert any("split 'split' joins at join in v1 but at merge in v2" in p
               for p in plan["problems"]), plan
    r = await full.post("/v1/instances/p1/migrate", json={"to_version": 2})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_migratable"
    mapped = await full.post("/v1/instances/p1/migrate", json={
        "to_version": 2, "dry_run": True, "step_map": {"join": "merge"}})
    assert mapped.json()["plan"]["ok"] is True, mapped.text

"""End to end: the four services as processes, a real broker, real HTTP, SQLite.

One stack serves the module; each test uses its own instance ids.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.topics import COMPLETED_V1
from services.common.envelopes import decode, encode
from services.common.settings import Settings
from services.devstack import Stack
from tests.conftest import wait_for

PROCESS = "remanufacturing"


def start(api: httpx.Client, part: str | None = None) -> str:
    iid = part or f"SN-{uuid.uuid4().hex[:8]}"
    r = api.post("/v1/instances", json={"process": PROCESS, "instance_id": iid,
                                        "subject": {"type": "part", "id": iid}})
    assert r.status_code == 202, r.text
    assert r.json()["instance_id"] == iid
    return iid


def instance(api: httpx.Client, iid: str) -> dict[str, Any] | None:
    r = api.get(f"/v1/instances/{iid}")
    return r.json() if r.status_code == 200 else None


def at_step(api: httpx.Client, iid: str, step: str, visit: int | None = None,
            within: float = 30) -> dict[str, Any]:
    """Wait until the instance is at `step` (and its `visit`-th time there)."""

    def check() -> dict[str, Any] | None:
        view = instance(api, iid)
        if view and step in view["active_steps"] and (
                visit is None or view["visits"].get(step) == visit):
            return view
        return None

    return wait_for(check, within, what=f"{iid} at {step} (visit {visit})")  # type: ignore[no-any-return]


def finished(api: httpx.Client, iid: str, within: float = 30) -> dict[str, Any]:
    return wait_for(lambda: (v := instance(api, iid)) and v["status"] == "completed" and v,
                    within, what=f"{iid} completed")  # type: ignore[no-any-return]


def complete(api: httpx.Client, iid: str, step: str, outcome: str | None = None,
             event_id: str | None = None, **extra: Any) -> httpx.Response:
    body = {"step": step, "outcome": outcome, "operator": "e2e", **extra}
    if event_id:
        body["event_id"] = event_id
    r = api.post(f"/v1/instances/{iid}/completions", json=body)
    assert r.status_code == 202, r.text
    return r


def advance(api: httpx.Client, iid: str, step: str, outcome: str | None = None) -> None:
    view = at_step(api, iid, step)
    complete(api, iid, step, outcome, visit=view["visits"][step])


def to_inspect(api: httpx.Client, iid: str) -> None:
    for step in ("receive", "disassemble", "clean"):
        advance(api, iid, step)


def test_parts_reach_every_terminal_status(api: httpx.Client) -> None:
    shipped, scrapped, returned = start(api), start(api), start(api)
    for iid in (shipped, scrapped, returned):
        to_inspect(api, iid)
    # shipped: operators do the human steps through their inbox (claim, complete)
    advance(api, shipped, "inspect", "pass")
    for step in ("reassemble",):
        at_step(api, shipped, step)
        task = wait_for(lambda s=step: next((t for t in api.get(
            "/v1/tasks", params={"instance_id": shipped, "status": "open"}).json()["items"]
            if t["step"] == s), None), what=f"open {step} task")
        assert api.post(f"/v1/tasks/{task['task_id']}/claim",
                        json={"operator": "ada"}).status_code == 200
        assert api.post(f"/v1/tasks/{task['task_id']}/complete",
                        json={"operator": "ada"}).status_code == 202
    advance(api, shipped, "final_qa", "pass")
    advance(api, shipped, "ship")
    # scrapped / returned: fail inspection until the escalation, then decide
    for iid in (scrapped, returned):
        for _ in range(3):
            advance(api, iid, "inspect", "fail")
            advance(api, iid, "rework")
        advance(api, iid, "inspect", "fail")
    advance(api, scrapped, "scrap_decision", "scrap")
    advance(api, returned, "scrap_decision", "return")
    assert finished(api, shipped)["terminal_status"] == "completed"
    assert finished(api, scrapped)["terminal_status"] == "scrapped"
    assert finished(api, returned)["terminal_status"] == "returned"
    journey = finished(api, shipped)["journey"]
    assert [v["step"] for v in journey] == [
        "start", "receive", "disassemble", "clean", "inspect", "reassemble", "final_qa",
        "ship", "shipped"]
    assert next(v for v in journey if v["step"] == "reassemble")["operator"] == "ada"


def test_four_inspection_failures_escalate_with_three_reworks(api: httpx.Client) -> None:
    iid = start(api)
    to_inspect(api, iid)
    for attempt in range(1, 4):
        advance(api, iid, "inspect", "fail")
        at_step(api, iid, "rework", visit=attempt)
        advance(api, iid, "rework")
    advance(api, iid, "inspect", "fail")
    view = at_step(api, iid, "scrap_decision")
    assert view["visits"]["rework"] == 3
    assert view["visits"]["inspect"] == 4
    assert view["active_steps"] == ["scrap_decision"]
    assert [v["visit"] for v in view["journey"] if v["step"] == "inspect"] == [1, 2, 3, 4]


def router_metric(stack: Stack, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{stack.settings.router_web_port}/metrics").text
    values = [float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)]
    return sum(values)


def test_a_duplicate_completion_changes_nothing(api: httpx.Client, stack: Stack) -> None:
    iid = start(api)
    at_step(api, iid, "receive")
    duplicates = router_metric(stack, "flowline_router_duplicates_total")
    event_id = f"{iid}-receive-once"
    complete(api, iid, "receive", event_id=event_id)
    at_step(api, iid, "disassemble")
    complete(api, iid, "receive", event_id=event_id)  # at-least-once sender retries
    wait_for(lambda: router_metric(stack, "flowline_router_duplicates_total") > duplicates,
             what="the router to count the duplicate")
    view = instance(api, iid)
    assert view is not None
    assert view["visits"] == {"start": 1, "receive": 1, "disassemble": 1}
    assert view["active_steps"] == ["disassemble"]


def dead_letters(settings: Settings, want: int, key_prefix: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(settings.dead_letters_topic,
                                    bootstrap_servers=settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=50)
        await consumer.start()
        found: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(30):
                while len(found) < want:
                    for records in (await consumer.getmany(timeout_ms=200)).values():
                        for r in records:
                            letter = decode(r.headers, r.key, r.value).data
                            if (letter.get("key") or "").startswith(key_prefix):
                                found.append(letter)
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


def test_stale_and_malformed_records_land_in_dead_letters(api: httpx.Client,
                                                          stack: Stack) -> None:
    settings = stack.settings
    iid = start(api)
    at_step(api, iid, "receive")
    complete(api, iid, "inspect", "pass")  # the part is at receive: stale

    async def send_garbage() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        await producer.send_and_wait(settings.completions_topic, b"{not json",
                                     key=f"{iid}-bad".encode())
        # A well-formed completion of the step the part is at, but for a NaN: Python's json
        # reads it, JSON has no such number (it once reached a GET, which answered 500).
        data = {"instance_id": iid, "step": "receive", "measurements": {"torque": math.nan}}
        headers, _ = encode(COMPLETED_V1, data, service="equipment", subject=iid)
        await producer.send_and_wait(settings.completions_topic, json.dumps(data).encode(),
                                     key=iid.encode(), headers=headers)
        await producer.stop()

    asyncio.run(send_garbage())
    letters = dead_letters(settings, 3, iid)
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for letter in letters:
        by_reason.setdefault(letter["reason"], []).append(letter)
    assert sorted(by_reason) == ["malformed", "stale"]
    assert "not at inspect" in by_reason["stale"][0]["detail"]
    garbage, nan = sorted(by_reason["malformed"], key=lambda letter: letter["key"] != f"{iid}-bad")
    assert garbage["value"] == "{not json"
    assert garbage["topic"] == settings.completions_topic
    assert nan["key"] == iid and "NaN" in nan["value"]
    assert "not JSON" in nan["detail"] and "NaN" in nan["detail"], nan["detail"]
    # the router kept going: the part still moves (the NaN completion did not move it)
    advance(api, iid, "receive")
    at_step(api, iid, "disassemble")


@pytest.mark.durability
def test_killing_the_router_mid_run_loses_nothing(api: httpx.Client, stack: Stack) -> None:
    """faust can drop records it fetched around a restart's rebalance; the router's own commit
    rule (services/router/offsets.py) never passes them and stall.py re-reads them. Runs on
    both brokers (Tansu too since 2026-11-22, session 2)."""
    parts = [start(api) for _ in range(12)]
    for iid in parts:
        advance(api, iid, "receive")
    for iid in parts:
        at_step(api, iid, "disassemble")
    stack.kill("router")  # kill -9: no shutdown, no final commit
    for iid in parts:  # accepted by Kafka while the router is down
        complete(api, iid, "disassemble", visit=1)
    stack.start_service("router")
    stack.wait_healthy("router", 60)
    for iid in parts:
        advance(api, iid, "clean")
        advance(api, iid, "inspect", "pass")
        advance(api, iid, "reassemble")
        advance(api, iid, "final_qa", "pass")
        advance(api, iid, "ship")
    for iid in parts:
        view = finished(api, iid, within=60)
        assert view["terminal_status"] == "completed"
        assert set(view["visits"].values()) == {1}, view["visits"]
        assert len(view["journey"]) == 9

"""HTTP and webhook steps: the tasks service calls a real local HTTP server, retries with
exponential backoff, completes the step with the response, or gives up and holds the instance.

The backoff base is 0.1 s here (default 1 s: 2, 4, 8 ... 60 s), so retries take a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from schemas.topics import COMPLETED_V1, HOLD_V1
from services.common.envelopes import Decoded, decode
from services.common.kafka import EventProducer
from services.common.settings import Settings
from services.tasks.api import create_app
from services.tasks.config import AutomationSettings
from tests.conftest import async_wait_for
from tests.integration.test_tasks_service import command, new_instance, send_command, serve

pytestmark = pytest.mark.integration

BASE = 0.1
AUTOMATION = AutomationSettings(scheduler_interval=0.1, backoff_base=BASE)


@dataclass
class Seen:
    at: float
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


@dataclass
class Upstream:
    """A local HTTP server that answers from a script: a status per call, then `then`."""

    url: str = ""
    script: list[int] = field(default_factory=list)
    then: int = 200
    answer: dict[str, Any] = field(default_factory=lambda: {"ticket": "T-1",
                                                            "result": {"grade": "A"}})
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def any_call(request: Request, path: str) -> JSONResponse:
            raw = await request.body()
            with self.lock:
                self.seen.append(Seen(time.monotonic(), request.method, "/" + path,
                                      request.url.query, dict(request.headers),
                                      await request.json() if raw else None))
                status = self.script.pop(0) if self.script else self.then
            if status >= 400:
                return JSONResponse({"error": "not now"}, status)
            return JSONResponse(self.answer, status)

        return app


@pytest.fixture()
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    with serve(server.app()) as url:
        server.url = url
        yield server


@pytest.fixture()
def tasks_url(topics: Settings) -> Iterator[str]:
    with serve(create_app(topics, automation=AUTOMATION)) as url:
        yield url


async def records_of(settings: Settings, topic: str, instance: str, ce_type: str,
                     within: float = 30, settle: float = 0.5) -> list[Decoded]:
    """Events of `ce_type` keyed by `instance` on `topic`, from the start; once one arrived,
    read `settle` seconds more so a duplicate would show."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    found: list[Decoded] = []
    await consumer.start()
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    event = decode(r.headers, r.key, r.value)
                    if r.key == instance.encode() and event.type == ce_type:
                        found.append(event)
            if found:
                deadline = min(deadline, time.monotonic() + settle)
    finally:
        await consumer.stop()
    assert found, f"no {ce_type} for {instance} on {topic} within {within}s"
    return found


async def job_when(client: httpx.AsyncClient, job_id: str, status: str) -> dict[str, Any]:
    async def check() -> dict | None:
        r = await client.get(f"/v1/jobs/{job_id}")
        return dict(r.json()) if r.status_code == 200 and r.json()["status"] == status else None

    return dict(await async_wait_for(check, within=30, what=f"job {job_id} {status}"))


async def test_http_step_retries_with_backoff_then_completes_with_the_response(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings, upstream: Upstream
) -> None:
    upstream.script = [503, 500]  # fails twice, then answers 200
    inst = new_instance()
    action = {
        "type": "http", "method": "POST",
        "url": upstream.url + "/lots/${subject.id}/inspect?visit=${visit}",
        "headers": {"X-Lot": "${context.lot}"},
        "body": {"serial": "${subject.id}", "limits": "${context.limits}",
                 "note": "lot ${context.lot}"},
        "timeout_s": 5, "max_attempts": 4, "outcome_field": "result.grade",
    }
    await send_command(producer, command(inst, "notify_erp", step_type="automated", role=None,
                                         action=action,
                                         context={"lot": "L7", "limits": {"max": 5}}))
    job_id = f"{inst}/notify_erp/1"

    [completion] = await records_of(topics, topics.completions_topic, inst, COMPLETED_V1)
    assert completion.id == f"job:{job_id}"
    assert completion.data["outcome"] == "A"
    assert completion.data["measurements"] == {"status_code": 200, "ticket": "T-1",
                                               "result": {"grade": "A"}}
    assert (completion.data["step"], completion.data["visit"]) == ("notify_erp", 1)

    assert len(upstream.seen) == 3
    for call in upstream.seen:
        assert (call.method, call.path, call.query) == ("POST", "/lots/SN-1/inspect", "visit=1")
        assert call.headers["x-lot"] == "L7"
        assert call.headers["idempotency-key"] == job_id
        assert call.body == {"serial": "SN-1", "limits": {"max": 5}, "note": "lot L7"}
    gaps = [b.at - a.at for a, b in zip(upstream.seen, upstream.seen[1:], strict=False)]
    # Retry n waits base * 2**n: 0.2 s, then 0.4 s (plus the runner's own latency).
    # Lower bounds only: a loaded machine stretches a gap, never shortens it.
    assert gaps[0] >= 2 * BASE * 0.95 and gaps[1] >= 4 * BASE * 0.95, gaps
    assert all(g < 10.0 for g in gaps), gaps  # seconds, not the 2^n s default

    job = await job_when(client, job_id, "succeeded")
    assert (job["attempts"], job["kind"], job["outcome"]) == (3, "http", "A")
    assert job["error"] and "500" in job["error"]  # the last failure stays visible
    warnings = [e["message"] for e in job["logs"] if e["level"] == "WARN"]
    assert len(warnings) == 2 and "retrying in 0.2s" in warnings[0]
    assert "retrying in 0.4s" in warnings[1]
    task = (await client.get(f"/v1/tasks/{job_id}")).json()
    assert (task["status"], task["executor"], task["incident"]) == ("completed", "http", None)


async def test_exhausted_attempts_hold_the_instance_with_the_error(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings, upstream: Upstream
) -> None:
    upstream.then = 503
    inst = new_instance()
    await send_command(producer, command(inst, "notify", step_type="automated", role=None,
                                         action={"type": "webhook", "url": upstream.url + "/h",
                                                 "max_attempts": 3}))
    job_id = f"{inst}/notify/1"

    [hold] = await records_of(topics, topics.requests_topic, inst, HOLD_V1)
    assert hold.id == f"hold:{job_id}/3"
    assert hold.data["action"] == "hold" and hold.data["operator"] == "flowline-tasks"
    assert "step notify failed" in hold.data["reason"]
    assert "answered 503" in hold.data["reason"] and "after 3 attempts" in hold.data["reason"]
    assert len(upstream.seen) == 3
    assert upstream.seen[0].body["instance_id"] == inst  # a webhook posts the step itself
    assert upstream.seen[0].body["step"] == "notify"

    job = await job_when(client, job_id, "failed")
    assert job["attempts"] == 3 and "503" in job["error"]
    task = (await client.get(f"/v1/tasks/{job_id}")).json()
    assert task["status"] == "open" and "answered 503" in task["incident"]

    # An operator fixes the far end and retries: the job runs again and completes the step.
    upstream.then = 200
    r = await client.post(f"/v1/jobs/{job_id}/retry")
    assert r.status_code == 200 and r.json()["status"] == "queued"
    [done] = await records_of(topics, topics.completions_topic, inst, COMPLETED_V1)
    assert done.id == f"job:{job_id}" and done.data["outcome"] == "pass"
    assert (await client.get(f"/v1/tasks/{job_id}")).json()["incident"] is None
    r = await client.post(f"/v1/jobs/{job_id}/retry")
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_not_failed"


async def test_a_client_error_is_not_retried(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings, upstream: Upstream
) -> None:
    upstream.then = 404
    inst = new_instance()
    await send_command(producer, command(inst, "lookup", step_type="automated", role=None,
                                         action={"type": "http", "method": "GET",
                                                 "url": upstream.url + "/parts/${subject.id}"}))
    [hold] = await records_of(topics, topics.requests_topic, inst, HOLD_V1)
    assert "answered 404" in hold.data["reason"] and "attempts" not in hold.data["reason"]
    assert len(upstream.seen) == 1 and upstream.seen[0].method == "GET"


async def test_a_broken_action_is_an_incident_not_a_call(
    client: httpx.AsyncClient, producer: EventProducer, topics: Settings
) -> None:
    inst = new_instance()
    await send_command(producer, command(inst, "call", step_type="automated", role=None,
                                         action={"type": "http", "url": "http://h/${nope}"}))
    [hold] = await records_of(topics, topics.requests_topic, inst, HOLD_V1)
    assert "$nope" in hold.data["reason"]
    job = await job_when(client, f"{inst}/call/1", "failed")
    assert job["attempts"] == 1
    # With an incident on it, a person may complete the step by hand.
    r = await client.post(f"/v1/tasks/{inst}/call/1/claim", json={"operator": "ann"})
    assert r.status_code == 200, r.text
